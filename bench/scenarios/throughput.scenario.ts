import { userIdFor } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import type { Contender } from '../support/contenders.js';
import { type LoadSample, collectGarbage, median, runLoad } from '../support/measure.js';
import { type Report, fixed, ratio, whole } from '../support/report.js';

export type Workload = 'select' | 'insert';

export interface ThroughputResult {
  workload: Workload;
  callers: number;
  contender: string;
  opsPerSec: number;
  /** Median over rounds of (this contender's ops/s ÷ raw pg's ops/s in the same round). */
  vsPg: number;
  vsPgMin: number;
  vsPgMax: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerOp: number;
  /** Median over rounds of (this contender's client CPU per op ÷ raw pg's in the same round). */
  cpuVsPg: number;
}

const WORKLOAD_TITLE: Record<Workload, string> = {
  select: 'primary-key select (one row of 10,000)',
  insert: 'insert in a transaction (BEGIN; INSERT; COMMIT)',
};

export function workloadTitle(workload: Workload): string {
  return WORKLOAD_TITLE[workload];
}

/** The operation a contender runs for this workload, checking what it got back. */
function operationOf(contender: Contender, workload: Workload): ((i: number) => Promise<unknown>) | undefined {
  if (workload === 'insert') {
    const insert = contender.insertEvent;
    return insert && ((i) => insert(userIdFor(i), `event ${i}`));
  }
  const select = contender.selectUser;
  return (
    select &&
    (async (i) => {
      const id = userIdFor(i);
      const row = await select(id);
      if (row?.id !== id) throw new Error(`${contender.key} returned the wrong row for id ${id}`);
    })
  );
}

/**
 * Every contender, every caller count, `rounds` times. Within a round the contenders run one after
 * the other in an order rotated each round, so slow drift of the shared machine (other jobs,
 * autovacuum, table growth) spreads over all of them instead of always hitting the same one.
 */
export async function runThroughput(workload: Workload, contenders: Contender[], options: BenchOptions, report: Report): Promise<ThroughputResult[]> {
  const runners = contenders.flatMap((c) => {
    const op = operationOf(c, workload);
    return op ? [{ key: c.key, op }] : [];
  });
  if (!runners.some((r) => r.key === 'pg')) throw new Error('raw pg is the baseline of every ratio and must take part');
  const ops = workload === 'select' ? options.selectOps : options.insertOps;
  report.line(`## ${workloadTitle(workload)}: ${options.rounds} rounds × ${ops} timed ops per measurement, ${options.warmupOps} warm-up ops before each`);

  const topCallers = Math.max(...options.callers);
  for (const runner of runners) await runLoad(options.warmupOps * 3, topCallers, runner.op); // opens every pooled connection

  const samples = new Map<string, LoadSample[]>(); // `${callers}/${key}` → one sample per round
  for (let round = 0; round < options.rounds; round++) {
    for (const callers of options.callers) {
      const shift = round % runners.length;
      const order = [...runners.slice(shift), ...runners.slice(0, shift)];
      const line: string[] = [];
      for (const runner of order) {
        collectGarbage();
        await runLoad(options.warmupOps, callers, runner.op);
        const sample = await runLoad(ops, callers, runner.op);
        const key = `${callers}/${runner.key}`;
        samples.set(key, [...(samples.get(key) ?? []), sample]);
        line.push(`${runner.key} ${whole(sample.opsPerSec)} ops/s p50 ${fixed(sample.p50Ms)} p99 ${fixed(sample.p99Ms)} cpu ${fixed(sample.cpuUsPerOp, 0)} µs/op`);
      }
      report.line(`round ${round + 1} callers ${callers}: ${line.join(' | ')}`);
    }
  }

  const results: ThroughputResult[] = [];
  for (const callers of options.callers) {
    const baseline = samples.get(`${callers}/pg`)!;
    for (const runner of runners) {
      const own = samples.get(`${callers}/${runner.key}`)!;
      const ratios = own.map((s, round) => s.opsPerSec / baseline[round].opsPerSec);
      results.push({
        workload,
        callers,
        contender: runner.key,
        opsPerSec: median(own.map((s) => s.opsPerSec)),
        vsPg: median(ratios),
        vsPgMin: Math.min(...ratios),
        vsPgMax: Math.max(...ratios),
        p50Ms: median(own.map((s) => s.p50Ms)),
        p99Ms: median(own.map((s) => s.p99Ms)),
        cpuUsPerOp: median(own.map((s) => s.cpuUsPerOp)),
        cpuVsPg: median(own.map((s, round) => s.cpuUsPerOp / baseline[round].cpuUsPerOp)),
      });
    }
  }
  report.line();
  report.line(`Medians over rounds (vs pg: median of the per-round ratios, [min–max] across rounds):`);
  for (const r of results) {
    report.line(
      `  callers ${String(r.callers).padStart(2)} ${r.contender.padEnd(12)} ${whole(r.opsPerSec).padStart(7)} ops/s  ${ratio(r.vsPg)} [${fixed(r.vsPgMin, 3)}–${fixed(r.vsPgMax, 3)}]  p50 ${fixed(r.p50Ms)} ms  p99 ${fixed(r.p99Ms)} ms  client CPU ${fixed(r.cpuUsPerOp, 0)} µs/op (${ratio(r.cpuVsPg)})`,
    );
  }
  // The yardstick for select: each contender against postgres.js in the same round.
  if (runners.some((r) => r.key === 'postgres.js')) {
    report.line();
    report.line('Against postgres.js (median of the per-round ratios of ops/s and of client CPU per op, [min–max] of ops/s across rounds):');
    for (const callers of options.callers) {
      const rival = samples.get(`${callers}/postgres.js`)!;
      for (const runner of runners) {
        if (runner.key === 'postgres.js') continue;
        const own = samples.get(`${callers}/${runner.key}`)!;
        const ratios = own.map((s, round) => s.opsPerSec / rival[round].opsPerSec);
        const cpu = median(own.map((s, round) => s.cpuUsPerOp / rival[round].cpuUsPerOp));
        report.line(
          `  callers ${String(callers).padStart(3)} ${runner.key.padEnd(17)} ${ratio(median(ratios))} [${fixed(Math.min(...ratios), 3)}–${fixed(Math.max(...ratios), 3)}]  client CPU ${ratio(cpu)}`,
        );
      }
    }
  }
  report.line();
  return results;
}
