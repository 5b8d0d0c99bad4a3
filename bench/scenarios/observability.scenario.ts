import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import type pg from 'pg';
import { DatabaseObserver } from '../../src/secure-database/observability/database-observer.js';
import { PoolMetrics } from '../../src/secure-database/observability/database-metrics.js';
import { SlowQueryLog } from '../../src/secure-database/observability/slow-query-log.js';
import { SELECT_USER_SQL } from '../support/bench-database.js';
import { type Report, fixed } from '../support/report.js';

export interface ObserverCost {
  variant: string;
  /** Client CPU per statement the observer adds (µs), over a statement that resolves at once. */
  cpuUsPerStatement: number;
}

const ITERATIONS = 300_000;
const WARMUP = 30_000;

/**
 * What reporting one statement costs the client, without the database: the observer wrapped around a
 * statement that resolves at once, per variant, minus the bare call. Client CPU (user + system) per
 * statement; beside the throughput scenario's client CPU per PK select it gives the share.
 */
export async function runObserverCost(report: Report): Promise<ObserverCost[]> {
  report.line(`## Observability: client CPU per statement added by the observer (${ITERATIONS.toLocaleString('en')} statements per variant, no database)`);
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 10_000 });
  const provider = new MeterProvider({ readers: [reader] });
  try {
    const gauges = { stats: () => ({ total: 10, idle: 10, waiting: 0, tlsAssertionsPassed: 10, tlsAssertionsFailed: 0 }) };
    const metrics = new PoolMetrics(provider.getMeter('bench'), { poolName: 'default', database: 'bench', host: '127.0.0.1', port: 5432, max: 10 }, gauges);
    const quiet = { warn: () => undefined };
    let events = 0;
    const hook = () => void events++;
    const result = { rowCount: 1, command: 'SELECT', rows: [{}], fields: [], oid: 0 } as unknown as pg.QueryResult;
    const statement = () => Promise.resolve(result);
    const variants: Array<[string, (() => Promise<unknown>) | undefined]> = [
      ['onQuery hook only', wrap(new DatabaseObserver('default', false, quiet, hook), statement)],
      ['slow-query log only', wrap(new DatabaseObserver('default', false, quiet, undefined, new SlowQueryLog(1000, quiet, false)), statement)],
      ['metrics only (operation duration)', wrap(new DatabaseObserver('default', false, quiet, undefined, undefined, metrics), statement)],
      ['all three', wrap(new DatabaseObserver('default', false, quiet, hook, new SlowQueryLog(1000, quiet, false), metrics), statement)],
      ['wait_time, per pool checkout', async () => metrics.waited(0.0001)],
    ];
    const bare = await cpuPerCall(statement);
    const costs: ObserverCost[] = [];
    for (const [variant, call] of variants) {
      const cpu = (await cpuPerCall(call!)) - (variant.startsWith('wait_time') ? 0 : bare);
      costs.push({ variant, cpuUsPerStatement: cpu });
      report.line(`${variant.padEnd(36)} ${fixed(cpu, 2)} µs`);
    }
    report.line(`(the bare call: ${fixed(bare, 2)} µs; ${events} events)`);
    report.line();
    return costs;
  } finally {
    await provider.shutdown();
  }
}

function wrap(observer: DatabaseObserver, statement: () => Promise<pg.QueryResult>): () => Promise<unknown> {
  return () => observer.statement(SELECT_USER_SQL, {}, false, statement);
}

async function cpuPerCall(call: () => Promise<unknown>): Promise<number> {
  for (let i = 0; i < WARMUP; i++) await call();
  const start = process.cpuUsage();
  for (let i = 0; i < ITERATIONS; i++) await call();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / ITERATIONS;
}
