/** What one benchmark run does; every number can be set by argv (`--rounds=3`) or env (`BENCH_ROUNDS=3`). */
export interface BenchOptions {
  quick: boolean;
  /** Rounds of the throughput scenarios; the contenders' order rotates each round. */
  rounds: number;
  poolMax: number;
  /** Concurrent callers of the throughput scenarios. */
  callers: number[];
  /** Timed operations per measurement (one contender, one caller count, one round). */
  selectOps: number;
  insertOps: number;
  /** Untimed operations before each measurement (re-opens connections, warms the JIT). */
  warmupOps: number;
  /** New connections per arm of the connection-cost scenario. */
  connectSamples: number;
  recoveryRounds: number;
  memoryQueries: number;
  /** Rows of the table the bounded-results scenario streams. */
  streamRows: number;
  /** Users in the demo's table for the bounded-results scenario. */
  demoUsers: number;
  /** Rows each writer of the copy scenario writes. */
  copyRows: number;
  /** Scenarios to run: select, insert, connect, memory, recovery, bounded, pooler, observability (with select: observed service contenders too), copy. */
  only: Set<string>;
  /** Where the raw output goes; `-` for nowhere. */
  resultsDir: string;
}

export const SCENARIOS = ['select', 'insert', 'connect', 'memory', 'recovery', 'bounded', 'pooler', 'settings', 'observability', 'copy'] as const;

const FULL = { rounds: 5, selectOps: 5_000, insertOps: 2_000, warmupOps: 300, connectSamples: 40, recoveryRounds: 3, memoryQueries: 200_000, streamRows: 1_000_000, demoUsers: 300_000, copyRows: 1_000_000 };
const QUICK = { rounds: 2, selectOps: 1_500, insertOps: 600, warmupOps: 100, connectSamples: 12, recoveryRounds: 1, memoryQueries: 25_000, streamRows: 200_000, demoUsers: 60_000, copyRows: 200_000 };

function argValue(argv: string[], name: string): string | undefined {
  const prefix = `--${name}=`;
  return argv.find((a) => a.startsWith(prefix))?.slice(prefix.length);
}

function positiveInt(raw: string | undefined, fallback: number, what: string): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) throw new Error(`${what} must be a whole number, at least 1 (got ${raw})`);
  return value;
}

export function readBenchOptions(argv = process.argv.slice(2), env = process.env): BenchOptions {
  const quick = argv.includes('--quick') || env.BENCH_QUICK === '1';
  const base = quick ? QUICK : FULL;
  const pick = (flag: string, envName: string, fallback: number) => positiveInt(argValue(argv, flag) ?? env[envName], fallback, `--${flag} / ${envName}`);
  const callersRaw = argValue(argv, 'callers') ?? env.BENCH_CALLERS ?? '1,16,64';
  // observability only when asked for: it adds two contenders to every throughput measurement.
  const onlyRaw = argValue(argv, 'only') ?? env.BENCH_ONLY ?? SCENARIOS.filter((s) => s !== 'observability').join(',');
  const only = new Set(onlyRaw.split(',').map((s) => s.trim()).filter(Boolean));
  for (const name of only) if (!(SCENARIOS as readonly string[]).includes(name)) throw new Error(`unknown scenario ${name}; known: ${SCENARIOS.join(', ')}`);
  return {
    quick,
    rounds: pick('rounds', 'BENCH_ROUNDS', base.rounds),
    poolMax: pick('pool-max', 'BENCH_POOL_MAX', 10),
    callers: callersRaw.split(',').map((c) => positiveInt(c.trim(), 1, '--callers / BENCH_CALLERS')),
    selectOps: pick('select-ops', 'BENCH_SELECT_OPS', base.selectOps),
    insertOps: pick('insert-ops', 'BENCH_INSERT_OPS', base.insertOps),
    warmupOps: pick('warmup-ops', 'BENCH_WARMUP_OPS', base.warmupOps),
    connectSamples: pick('connect-samples', 'BENCH_CONNECT_SAMPLES', base.connectSamples),
    recoveryRounds: pick('recovery-rounds', 'BENCH_RECOVERY_ROUNDS', base.recoveryRounds),
    memoryQueries: pick('memory-queries', 'BENCH_MEMORY_QUERIES', base.memoryQueries),
    streamRows: pick('stream-rows', 'BENCH_STREAM_ROWS', base.streamRows),
    demoUsers: pick('demo-users', 'BENCH_DEMO_USERS', base.demoUsers),
    copyRows: pick('copy-rows', 'BENCH_COPY_ROWS', base.copyRows),
    only,
    resultsDir: argValue(argv, 'results-dir') ?? env.BENCH_RESULTS_DIR ?? 'bench/results',
  };
}
