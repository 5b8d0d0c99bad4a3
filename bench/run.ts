// `npm run bench`: what SecureDatabaseModule costs over raw node-postgres, against TypeORM (and
// postgres.js / pg pipelining), on a private local TLS cluster. Options: bench/support/bench-options.ts.
import 'reflect-metadata';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { ARM_TITLES, type ArmKey, type ConnectionCostResult, runConnectionCost } from './scenarios/connection-cost.scenario.js';
import { type BoundedResults, runBoundedResults } from './scenarios/bounded-results.scenario.js';
import { type CopyResults, runCopy } from './scenarios/copy.scenario.js';
import { type MemoryResult, runMemory } from './scenarios/memory.scenario.js';
import { type ObserverCost, runObserverCost } from './scenarios/observability.scenario.js';
import { type PoolerResults, runPooler } from './scenarios/pooler.scenario.js';
import { type RecoveryResult, runRecovery } from './scenarios/recovery.scenario.js';
import { type ThroughputResult, runThroughput, workloadTitle } from './scenarios/throughput.scenario.js';
import { runSettings } from './scenarios/settings.scenario.js';
import { type BenchDatabase, startBenchDatabase } from './support/bench-database.js';
import { type BenchOptions, readBenchOptions } from './support/bench-options.js';
import {
  type Contender,
  pgPipelineContender,
  postgresJsContender,
  rawPgContender,
  serviceContender,
  typeormContender,
} from './support/contenders.js';
import { describeMachine } from './support/machine.js';
import { writeThroughputChart } from './support/throughput-chart.js';
import { Report, fixed, mb, ratio, whole } from './support/report.js';

interface Results {
  throughput: ThroughputResult[];
  connection?: ConnectionCostResult;
  memory?: MemoryResult;
  recovery?: RecoveryResult;
  bounded?: BoundedResults;
  copy?: CopyResults;
  pooler?: PoolerResults;
  settings?: ThroughputResult[];
  observer?: ObserverCost[];
}

async function runScenarios(bench: BenchDatabase, options: BenchOptions, report: Report): Promise<Results> {
  const { target } = bench;
  const results: Results = { throughput: [] };
  const service = await serviceContender(target, options.poolMax);
  const rawPg = rawPgContender(target, options.poolMax);
  const peers: Contender[] = [];
  try {
    if (options.only.has('select') || options.only.has('insert')) {
      peers.push(await typeormContender(target, options.poolMax));
      if (options.only.has('select')) {
        peers.push(await serviceContender(target, options.poolMax, true), postgresJsContender(target, options.poolMax), await pgPipelineContender(target, options.poolMax));
      }
      // Events + slow-query log + metrics on, beside the same service without them, in the same rounds.
      if (options.only.has('observability') && options.only.has('select')) peers.push(await serviceContender(target, options.poolMax, false, true), await serviceContender(target, options.poolMax, true, true));
      const contenders = [service, rawPg, ...peers];
      report.line('Contenders:');
      for (const c of contenders) report.line(`  ${c.key.padEnd(12)} ${c.description}`);
      report.line();
      if (options.only.has('select')) results.throughput.push(...(await runThroughput('select', contenders, options, report)));
      if (options.only.has('insert')) {
        if (Number(process.versions.node.split('.')[0]) < 24) {
          // Measured separately (see the report of issue 8): ~+70-100 ns per promise once enabled.
          report.line('Note: DatabaseService.transaction uses AsyncLocalStorage; before Node 24 its first use turns on a promise hook for every promise in the process, so from here on every contender pays it.');
        }
        results.throughput.push(...(await runThroughput('insert', contenders, options, report)));
      }
    }
    // The peers are done; they must not be around when the recovery scenario restarts the server.
    await Promise.all(peers.splice(0).map((p) => p.close()));
    if (options.only.has('connect')) results.connection = await runConnectionCost(target, options, report);
    if (options.only.has('memory')) results.memory = await runMemory(service.service, options, report);
    if (options.only.has('recovery')) results.recovery = await runRecovery(target, service.service, rawPg.pool, options, report);
    if (options.only.has('bounded')) results.bounded = await runBoundedResults(target, options, report);
    if (options.only.has('copy')) results.copy = await runCopy(target, options, report);
    if (options.only.has('pooler')) results.pooler = await runPooler(bench, options, report);
    if (options.only.has('settings')) results.settings = await runSettings(bench, options, report);
    if (options.only.has('observability')) results.observer = await runObserverCost(report);
    return results;
  } finally {
    await Promise.allSettled([...peers, service, rawPg].map((c) => c.close()));
  }
}

function printSummary(results: Results, options: BenchOptions, machine: string[], report: Report): void {
  report.line('# Summary (paste into the README)');
  report.line();
  for (const fact of machine) report.line(`- ${fact}`);
  report.line(
    `- ${options.quick ? 'QUICK mode' : 'Full mode'}: ${options.rounds} rounds, contenders' order rotated each round; pool size ${options.poolMax} for every contender; ` +
      `${options.selectOps} selects / ${options.insertOps} inserts per measurement. Shared machine: expect a few % of noise.`,
  );
  report.line();
  if (results.throughput.length > 0) {
    report.table(
      ['Workload', 'Callers', 'Contender', 'ops/s', 'vs raw pg', 'p50 ms', 'p99 ms', 'client CPU µs/op (vs pg)'],
      results.throughput.map((r) => [
        r.workload === 'select' ? 'PK select' : 'insert in tx',
        r.callers,
        r.contender,
        whole(r.opsPerSec),
        r.contender === 'pg' ? '1 (baseline)' : `${ratio(r.vsPg)} (${fixed(r.vsPgMin, 2)}–${fixed(r.vsPgMax, 2)})`,
        fixed(r.p50Ms),
        fixed(r.p99Ms),
        r.contender === 'pg' ? fixed(r.cpuUsPerOp, 0) : `${fixed(r.cpuUsPerOp, 0)} (${ratio(r.cpuVsPg)})`,
      ]),
      3,
    );
    report.line();
    report.line(
      `PK select: ${workloadTitle('select')}; insert in tx: ${workloadTitle('insert')}. "vs raw pg": median of per-round throughput ratios (range over rounds). ` +
        'Client CPU: user + system time of the benchmark process per operation (the server runs on the same cores).',
    );
    report.line();
    printObservabilityCost(results.throughput, report);
  }
  if (results.observer) {
    report.table(['Observer cost per statement (no database)', 'client CPU µs'], results.observer.map((c) => [c.variant, fixed(c.cpuUsPerStatement, 2)]));
    report.line();
  }
  const c = results.connection;
  if (c) {
    report.table(
      ['New connection', 'median ms', 'p90 ms', 'round trips after auth'],
      [
        ...(Object.keys(ARM_TITLES) as ArmKey[]).map((k) => [ARM_TITLES[k], fixed(c.arms[k].medianMs), fixed(c.arms[k].p90Ms), c.arms[k].roundTrips]),
        ['TLS assertion cost (median of paired differences)', fixed(c.assertionMs), '', c.arms.module.roundTrips - c.arms.raw.roundTrips],
      ],
    );
    report.line();
  }
  const r = results.recovery;
  if (r) {
    report.table(
      [`After cluster.restart('fast') (median of ${r.rounds})`, 'ms after start returned', 'failed attempts (total)'],
      [
        ['fresh raw pg connect succeeds', fixed(r.freshConnectMs, 1), ''],
        ['first query through DatabaseService', fixed(r.serviceMs, 1), r.serviceFailures],
        ['first query through raw pg.Pool', fixed(r.rawPoolMs, 1), r.rawPoolFailures],
      ],
    );
    report.line(`(stop ${fixed(r.stopMs, 0)} ms, start ${fixed(r.startMs, 0)} ms; errors seen: ${r.errorCodes.join(', ') || 'none'})`);
    report.line();
  }
  const m = results.memory;
  if (m) {
    report.table(
      [`Memory, DatabaseService, ${whole(m.queries)} queries`, 'after warm-up MB', 'after the queries MB', 'delta MB'],
      (['heapUsed', 'rss'] as const).map((k) => [k, mb(m.before[k]), mb(m.after[k]), mb(m.after[k] - m.before[k])]),
    );
    report.line();
  }
  const copied = results.copy;
  if (copied) {
    const copyFrom = copied.writers.find((w) => w.writer === 'service-copyFrom')!;
    report.table(
      [`Writing ${whole(copied.rows)} rows (own process each)`, 'rows/s (median)', 'copyFrom vs this', 'client CPU µs/row', 'RSS at start MB', 'peak RSS MB (max)', 'RSS growth MB (max)'],
      copied.writers.map((w) => [w.writer, whole(w.rowsPerSec), ratio(copyFrom.rowsPerSec / w.rowsPerSec), fixed(w.cpuUsPerRow, 2), fixed(w.rssAtStartMb, 0), fixed(w.peakRssMb, 0), fixed(w.rssGrowthMb, 0)]),
    );
    report.line();
  }
  const b = results.bounded;
  if (b) {
    report.table(
      [`Reading ${whole(b.streamRows)} rows (own process each)`, 'rows/s (median)', 'client CPU µs/row', 'RSS at start MB', 'peak RSS MB (max)'],
      b.readers.map((r) => [r.reader, whole(r.rowsPerSec), fixed(r.cpuUsPerRow, 2), fixed(r.rssAtStartMb, 0), fixed(r.peakRssMb, 0)]),
    );
    report.line();
    report.table(
      [`Demo, ${whole(b.demoUsers)} active users, 8 concurrent clients`, 'requests', 'rows read', 'seconds', 'RSS ready MB', 'peak RSS MB'],
      b.demo.map((d) => [d.workload, whole(d.requests), whole(d.rowsRead), fixed(d.seconds, 1), fixed(d.rssAtReadyMb, 0), fixed(d.peakRssMb, 0)]),
    );
    report.line();
  }
  const p = results.pooler;
  if (p) {
    report.table(
      [`Through ${p.pgbouncer} (transaction mode)`, 'Callers', 'Contender', 'ops/s', 'vs raw pg via PgBouncer', 'p50 ms', 'p99 ms', 'client CPU µs/op'],
      p.throughput.map((r) => [
        r.workload === 'select' ? 'PK select' : 'insert in tx',
        r.callers,
        r.contender === 'pg' ? 'pg' : 'service, pooler=transaction',
        whole(r.opsPerSec),
        r.contender === 'pg' ? '1 (baseline)' : `${ratio(r.vsPg)} (${fixed(r.vsPgMin, 2)}–${fixed(r.vsPgMax, 2)})`,
        fixed(r.p50Ms),
        fixed(r.p99Ms),
        fixed(r.cpuUsPerOp, 0),
      ]),
      3,
    );
    report.line('The service sends the SET LOCAL timeouts (one set_config statement) ahead of each statement in the same round trip, and adds them to BEGIN in a transaction; raw pg sends the statement alone and runs without server timeouts.');
    report.line();
  }
  const settings = results.settings;
  if (settings) {
    const at = (callers: number, key: string) => settings.find((r) => r.callers === callers && r.contender === key)!;
    report.table(
      ['PK select', 'Callers', 'service ops/s', 'with { settings } ops/s', 'with ÷ without', 'client CPU µs/op without / with'],
      options.callers.map((callers) => {
        const [plain, tenant] = [at(callers, 'service'), at(callers, 'service-settings')];
        return ['per-call settings', callers, whole(plain.opsPerSec), whole(tenant.opsPerSec), ratio(tenant.vsPg / plain.vsPg), `${fixed(plain.cpuUsPerOp, 0)} / ${fixed(tenant.cpuUsPerOp, 0)}`];
      }),
      2,
    );
    report.line('with ÷ without: the ratio of their medians vs raw pg in the same rounds. One set_config statement (names and values bound) travels ahead of each statement in its round trip.');
    report.line();
  }
}

/** Observed vs plain service, each as its median ratio to raw pg in the same rounds: the cost of events + slow-query log + metrics. */
function printObservabilityCost(throughput: ThroughputResult[], report: Report): void {
  const rows: string[][] = [];
  for (const observed of throughput.filter((r) => r.contender.endsWith('-observed'))) {
    const plain = throughput.find((r) => r.workload === observed.workload && r.callers === observed.callers && r.contender === observed.contender.replace('-observed', ''));
    if (!plain) continue;
    const cost = 1 - observed.vsPg / plain.vsPg;
    rows.push([
      observed.workload === 'select' ? 'PK select' : 'insert in tx',
      String(observed.callers),
      plain.contender,
      ratio(plain.vsPg),
      ratio(observed.vsPg),
      `${fixed(cost * 100, 1)} %`,
      `${fixed(plain.cpuUsPerOp, 0)} → ${fixed(observed.cpuUsPerOp, 0)}`,
    ]);
  }
  if (rows.length === 0) return;
  report.table(['Observability on vs off', 'Callers', 'Contender', 'off: vs raw pg', 'on: vs raw pg', 'throughput cost', 'client CPU µs/op'], rows);
  report.line('On: onQuery (a counter), DATABASE_SLOW_QUERY_MS=1000 (never reached) and metrics into an SDK MeterProvider exporting every 10 s. Cost: 1 − (on vs raw pg) / (off vs raw pg).');
  report.line();
}

/** One SVG per throughput workload: ops/s against callers, a line per contender. */
async function writeCharts(results: Results, dir: string, startedAt: Date, report: Report): Promise<void> {
  const stamp = startedAt.toISOString().slice(0, 19).replaceAll(':', '-');
  for (const workload of ['select', 'insert'] as const) {
    const rows = results.throughput.filter((r) => r.workload === workload);
    if (rows.length === 0) continue;
    const title = `${workload === 'select' ? 'PK select' : 'insert in tx'}: ops/s by concurrent callers (Node ${process.version}, ${startedAt.toISOString().slice(0, 10)})`;
    report.line(`Chart: ${await writeThroughputChart(join(dir, `${stamp}-${workload}.svg`), title, rows)}`);
  }
}

async function main(): Promise<void> {
  const options = readBenchOptions();
  const report = new Report();
  const startedAt = new Date();
  const clock = performance.now();
  const bench = await startBenchDatabase();
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= bench.stop());
  // Ctrl-C still stops the cluster (the orphan reaper would otherwise clean up only after we are gone).
  process.once('SIGINT', () => void stop().finally(() => process.exit(130)));
  try {
    const machine = describeMachine(bench.target, startedAt);
    for (const fact of machine) report.line(fact);
    report.line(`Options: ${JSON.stringify({ ...options, only: [...options.only] })}`);
    report.line();
    const results = await runScenarios(bench, options, report);
    printSummary(results, options, machine, report);
    if (options.resultsDir !== '-') await writeCharts(results, options.resultsDir, startedAt, report);
    report.line(`Total time ${fixed((performance.now() - clock) / 1000, 1)} s`);
  } catch (error) {
    report.line(`FAILED: ${(error as Error)?.stack ?? String(error)}`);
    process.exitCode = 1;
  } finally {
    await stop();
    // Partial output of a failed run is kept too: it says how far the run got.
    if (options.resultsDir !== '-') process.stdout.write(`Raw output written to ${await report.save(options.resultsDir, startedAt)}\n`);
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench failed: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
