import { setImmediate as nextTurn } from 'node:timers/promises';
import { sql, type DatabaseService } from '../../src/index.js';
import { userIdFor } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import { collectGarbage, runLoad } from '../support/measure.js';
import { type Report, mb, whole } from '../support/report.js';

export interface MemoryResult {
  queries: number;
  callers: number;
  opsPerSec: number;
  before: NodeJS.MemoryUsage;
  after: NodeJS.MemoryUsage;
}

const CALLERS = 16;

async function settledMemory(): Promise<NodeJS.MemoryUsage> {
  // Twice with a turn between: the first collection's finalizers and weak callbacks run before the second.
  collectGarbage();
  await nextTurn();
  collectGarbage();
  return process.memoryUsage();
}

/** Heap and RSS after warm-up and after `memoryQueries` primary-key selects through DatabaseService. */
export async function runMemory(service: DatabaseService, options: BenchOptions, report: Report): Promise<MemoryResult> {
  if (typeof (globalThis as { gc?: unknown }).gc !== 'function') throw new Error('the memory scenario needs node --expose-gc');
  report.line(`## Memory: ${options.memoryQueries} primary-key selects through DatabaseService, ${CALLERS} callers`);
  const select = (i: number) => service.fetchrow(sql`SELECT id, name, email FROM bench_users WHERE id = ${userIdFor(i)}`);
  await runLoad(5_000, CALLERS, select);
  const before = await settledMemory();
  const load = await runLoad(options.memoryQueries, CALLERS, select);
  const after = await settledMemory();
  const row = (what: string, key: keyof NodeJS.MemoryUsage) =>
    `${what.padEnd(10)} ${mb(before[key]).padStart(7)} MB → ${mb(after[key]).padStart(7)} MB (${after[key] >= before[key] ? '+' : ''}${mb(after[key] - before[key])} MB)`;
  report.line(row('heapUsed', 'heapUsed'));
  report.line(row('heapTotal', 'heapTotal'));
  report.line(row('external', 'external'));
  report.line(row('rss', 'rss'));
  report.line(`(${whole(load.opsPerSec)} ops/s during the run)`);
  report.line();
  return { queries: options.memoryQueries, callers: CALLERS, opsPerSec: load.opsPerSec, before, after };
}
