import { performance } from 'node:perf_hooks';

export interface LoadSample {
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU time of this process (all threads: user + system) per operation, in µs: the client's own cost, much less disturbed by a busy machine than wall time. */
  cpuUsPerOp: number;
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))];
}

/** Full collection before a measurement, so one contender's garbage is not collected on another's clock. */
export function collectGarbage(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Runs exactly `ops` operations with `callers` concurrent loops sharing one counter, timing each
 * operation; throughput is ops over the wall time of the whole batch. Any failure aborts the run:
 * a benchmark that silently measures errors measures nothing.
 */
export async function runLoad(ops: number, callers: number, op: (i: number) => Promise<unknown>): Promise<LoadSample> {
  const latencies = new Float64Array(ops);
  let next = 0;
  const caller = async () => {
    for (let i = next++; i < ops; i = next++) {
      const started = performance.now();
      await op(i);
      latencies[i] = performance.now() - started;
    }
  };
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  await Promise.all(Array.from({ length: callers }, caller));
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  latencies.sort();
  return { opsPerSec: (ops / elapsedMs) * 1000, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), cpuUsPerOp: (cpu.user + cpu.system) / ops };
}
