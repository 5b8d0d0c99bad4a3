import type { FigureRecord } from './figures.js';

/** The figures kept in a results file (test/resilience/results/*.md): the JSON lines between ```jsonl and ```. */
export function parseKeptFigures(text: string): FigureRecord[] {
  const block = /```jsonl\n([\s\S]*?)```/.exec(text);
  if (!block) throw new Error('no ```jsonl block of figures in the results file');
  return block[1]
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as FigureRecord);
}

/**
 * The README's "Failure behaviour" table, generated from the figures the resilience specs reported
 * (one results file, any number of runs). Each figure is shown as the range it took over the file's
 * records. A scenario with no record is an error: every figure in the table must come from the file.
 */
export function failureTable(records: FigureRecord[]): string {
  const of = (scenario: string) => {
    const figures = records.filter((r) => r.scenario === scenario).map((r) => r.figures);
    if (figures.length === 0) throw new Error(`the results have no "${scenario}" figure`);
    /** Every value of `key` (arrays flattened) over the scenario's records. */
    const values = (key: string): unknown[] =>
      figures.flatMap((f) => {
        if (!(key in f)) throw new Error(`"${scenario}" has no ${key}`);
        return Array.isArray(f[key]) ? (f[key] as unknown[]) : [f[key]];
      });
    return {
      ms: (...keys: string[]) => msRange(keys.flatMap((k) => values(k) as number[])),
      n: (key: string) => range(values(key) as number[], (v) => v.toLocaleString('en-US')),
      percent: (key: string) => range(values(key) as number[], (v) => `${v > 0 ? '+' : v < 0 ? '−' : ''}${Math.abs(v)} %`),
      text: (key: string) => [...new Set(values(key).map(String))].join(', '),
      sum: (key: string) => (values(key) as number[]).reduce((a, b) => a + b, 0),
    };
  };
  const restartFast = of('cluster restart (fast)');
  const restartImmediate = of('cluster restart (immediate)');
  const restart = (fn: (f: typeof restartFast) => string) => [fn(restartFast), fn(restartImmediate)];
  const drop = of('network drop');
  const startupBlackhole = of('blackhole at startup');
  const runtimeBlackhole = of('blackhole at runtime');
  const exhaustion = of('pool exhaustion');
  const statementTimeout = of('statement timeout');
  const fullAtStartup = of('max_connections at startup');
  const fullAtRuntime = of('max_connections at runtime');
  const slow = of('slow network (200 ms each way)');
  const stalled = of('TLS handshake stalled');
  const shutdown = of('graceful shutdown');
  const load = of('load');
  const idle = of('idle connections terminated');
  const idleKill = of('idle sessions killed by the server');
  const busy = of('busy connection terminated');

  const rows: Array<[string, string, string]> = [
    [
      'Idle connections terminated by the server (57P01)',
      `nothing: ${idle.sum('failedReads')} of ${idle.sum('readsRightAfter')} reads failed right after the kills`,
      'next request; the pool reconnects',
    ],
    ['Idle-session kill, Neon-style (`idle_session_timeout`, 57P05)', `nothing: ${idleKill.sum('failed')} of ${idleKill.sum('requests')} requests failed`, 'immediate'],
    [
      'Busy connection terminated mid-query',
      `that request: 503 \`DB_CONNECTION_FAILED\`, \`Retry-After: 2\`, ${busy.ms('answeredAfterTerminateCallMs')} after the terminate call; its INSERT not applied`,
      'next request',
    ],
    [
      'Cluster restart (fast / immediate), under read/write load',
      `503 \`DB_CONNECTION_FAILED\` while the server is down (${restart((f) => f.ms('serverDownMs')).join(' / ')})`,
      `all requests succeed ${restart((f) => f.ms('allSucceedingAfterServerUpMs')).join(' / ')} after the server accepts`,
    ],
    [
      'Network connections reset (proxy) under load, a statement running on every pool slot',
      `those requests: 503 \`DB_CONNECTION_FAILED\` (${drop.n('failedAfterReset')} failed)`,
      `all requests succeed ${drop.ms('allSucceedingAfterResetMs')} after the reset`,
    ],
    [
      `Network path refused for ${drop.ms('refusedForMs')}`,
      'fast 503 `DB_CONNECTION_FAILED`',
      `all requests succeed ${drop.ms('allSucceedingAfterPathBackMs')} after the path is back`,
    ],
    [
      `Blackhole at startup (connect ${startupBlackhole.ms('connectTimeoutMs')}, ${startupBlackhole.n('attempts')} attempts)`,
      'process exits 1 with `DB_CONNECT_TIMEOUT` and the fix',
      `exits in ${startupBlackhole.ms('exitMs')}`,
    ],
    [
      `Blackhole at runtime (connect ${runtimeBlackhole.ms('connectTimeoutMs')}, statement ${runtimeBlackhole.ms('statementTimeoutMs')}, acquire ${runtimeBlackhole.ms('acquireTimeoutMs')})`,
      `pooled: 503 \`DB_CONNECTION_FAILED\` (client-side backstop) and queued: 503 \`DB_POOL_EXHAUSTED\`, in ${runtimeBlackhole.ms('firstWaveMs')}; ` +
        `new connections: 503 \`DB_CONNECT_TIMEOUT\` in ${runtimeBlackhole.ms('secondWaveMs')}; \`/health\` 503 \`${runtimeBlackhole.text('healthReason')}\` in ${runtimeBlackhole.ms('healthDownMs')}`,
      `${runtimeBlackhole.ms('firstSuccessAfterPathBackMs')} after the path is back`,
    ],
    [
      `Pool exhausted (${exhaustion.n('poolMax')} slots held by lock-blocked statements, ${exhaustion.n('requests')} concurrent requests, acquire ${exhaustion.ms('acquireTimeoutMs')})`,
      `${exhaustion.n('exhausted')} × 503 \`DB_POOL_EXHAUSTED\`, \`Retry-After: 1\`, in ${exhaustion.ms('fastestFailureMs', 'slowestFailureMs')}; \`/health\` 503 \`pool exhausted\` in ${exhaustion.ms('healthDownMs')}`,
      'on lock release the blocked requests complete; pool idle, no leaked client',
    ],
    [
      `Statement timeout (${statementTimeout.ms('statementTimeoutMs')}) behind a lock`,
      `503 \`DB_STATEMENT_TIMEOUT\` (57014) at ${statementTimeout.ms('answeredAfterMs')}`,
      'the statement is gone from `pg_stat_activity`; the write rolled back',
    ],
    ['`max_connections` full at startup', 'exit 1, `DB_TOO_MANY_CONNECTIONS` with the fix', `${fullAtStartup.ms('exitMs')} for ${fullAtStartup.n('attempts')} attempts`],
    [
      '`max_connections` full at runtime',
      `503 \`DB_TOO_MANY_CONNECTIONS\` (53300), \`Retry-After: 2\`, in ${fullAtRuntime.ms('answeredInMs')}`,
      `${fullAtRuntime.ms('resumedAfterReleaseMs')} after slots free`,
    ],
    [
      'Slow network (200 ms each way)',
      `everything succeeds: median request ${slow.ms('medianRequestMs')}, slowest ${slow.ms('slowestRequestMs')}; the demo's startup through it ${slow.ms('startupMs')}`,
      '–',
    ],
    [
      `TLS handshake stalled after the TCP accept (connect ${stalled.ms('connectTimeoutMs')})`,
      '`DB_CONNECT_TIMEOUT` within the connect budget (the timeout covers TLS)',
      `process exits 1 in ${stalled.ms('exitMs')}`,
    ],
    [
      `SIGTERM with ${shutdown.n('writers')} concurrent \`POST /users\` and more arriving`,
      'in-flight requests get 201 and every 201 is a row; later requests on open connections are answered with `Connection: close`; new connections refused',
      `exit 0 in ${shutdown.ms('exitMs')}, no backend left`,
    ],
    [
      `Load: ${load.n('requests')} requests at concurrency ${load.n('concurrency')}`,
      `0 unexpected answers; ${load.n('perSecond')} req/s, p50 ${load.ms('p50Ms')}, p99 ${load.ms('p99Ms')}`,
      `heap after the run ${load.percent('heapGrowthPercent')} from the heap after warm-up`,
    ],
  ];
  return [
    '| Fault | What a client sees | Recovery |',
    '| --- | --- | --- |',
    ...rows.map((cells) => `| ${cells.join(' | ')} |`),
  ].join('\n');
}

function range(values: number[], format: (v: number) => string): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  return lo === hi ? format(lo) : `${format(lo)} … ${format(hi)}`;
}

/** "47 ms", "47–169 ms", "3.1–3.5 s" (seconds from 1 s up). */
export function msRange(values: number[]): string {
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (hi >= 1000) {
    const s = (v: number) => (v / 1000).toFixed(1);
    return lo === hi || s(lo) === s(hi) ? `${s(hi)} s` : `${s(lo)}–${s(hi)} s`;
  }
  return lo === hi ? `${lo} ms` : `${lo}–${hi} ms`;
}
