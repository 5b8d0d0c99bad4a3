import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';

/**
 * Watches a server go away and come back by connecting every 10 ms: `downAt` is the first refused
 * attempt, `upAt` the start of the first attempt that succeeded after it (the server accepted again
 * at the latest by then). Times are performance.now().
 */
export async function watchOutage(cluster: LocalPostgresCluster, timeoutMs = 60_000): Promise<{ downAt: number; upAt: number }> {
  let downAt: number | undefined;
  for (const deadline = performance.now() + timeoutMs; performance.now() < deadline; await sleep(10)) {
    const attemptAt = performance.now();
    try {
      await (await cluster.superuserClient()).end();
      if (downAt !== undefined) return { downAt, upAt: attemptAt };
    } catch {
      downAt ??= attemptAt;
    }
  }
  throw new Error(`the server did not ${downAt === undefined ? 'go away' : 'come back'} within ${timeoutMs} ms`);
}
