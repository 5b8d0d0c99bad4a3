import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { DatabaseService } from '../../src/index.js';
import type { BenchTarget } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import { median, runLoad } from '../support/measure.js';
import { type Report, fixed } from '../support/report.js';

const POLL_INTERVAL_MS = 5;
const POLL_GIVE_UP_MS = 30_000;

interface PollOutcome {
  /** From `start` returning to the first success, in ms. */
  firstSuccessMs: number;
  failures: number;
  errorCodes: string[];
}

export interface RecoveryResult {
  rounds: number;
  stopMs: number;
  startMs: number;
  freshConnectMs: number;
  serviceMs: number;
  serviceFailures: number;
  rawPoolMs: number;
  rawPoolFailures: number;
  errorCodes: string[];
}

/** Tries `attempt` every few ms until it succeeds; records how long that took and what failed before. */
async function pollUntilSuccess(since: number, attempt: () => Promise<unknown>): Promise<PollOutcome> {
  const codes = new Set<string>();
  let failures = 0;
  for (;;) {
    try {
      await attempt();
      return { firstSuccessMs: performance.now() - since, failures, errorCodes: [...codes] };
    } catch (error) {
      failures++;
      codes.add(String((error as { code?: unknown }).code ?? (error as Error).name));
      if (performance.now() - since > POLL_GIVE_UP_MS) throw new Error(`no successful query ${POLL_GIVE_UP_MS} ms after the restart`, { cause: error });
      await sleep(POLL_INTERVAL_MS);
    }
  }
}

/**
 * cluster.restart('fast') with both pools full of idle connections (which the stop kills), then, from
 * the moment `start` returns, three pollers at once: a fresh raw pg connection (the server's own
 * readiness), a query through DatabaseService, and a query through a raw pg.Pool.
 */
export async function runRecovery(
  target: BenchTarget,
  service: DatabaseService,
  rawPool: pg.Pool,
  options: BenchOptions,
  report: Report,
): Promise<RecoveryResult> {
  report.line(`## Recovery after cluster.restart('fast'): ${options.recoveryRounds} restart(s), polling every ${POLL_INTERVAL_MS} ms`);
  const rounds: Array<{ stopMs: number; startMs: number; fresh: PollOutcome; service: PollOutcome; raw: PollOutcome }> = [];
  for (let round = 0; round < options.recoveryRounds; round++) {
    // Fill both pools: the restart must find connections to kill, as in production.
    await runLoad(200, options.poolMax, () => service.fetchval('SELECT 1'));
    await runLoad(200, options.poolMax, () => rawPool.query('SELECT 1'));
    const stopping = performance.now();
    await target.cluster.stop('fast');
    const stopped = performance.now();
    await target.cluster.start();
    const started = performance.now();
    const [fresh, viaService, viaRaw] = await Promise.all([
      pollUntilSuccess(started, async () => {
        const client = new pg.Client({ ...target.rawPg, connectionTimeoutMillis: 2_000 });
        client.on('error', () => undefined);
        await client.connect();
        await client.end();
      }),
      pollUntilSuccess(started, () => service.fetchval('SELECT 1')),
      pollUntilSuccess(started, () => rawPool.query('SELECT 1')),
    ]);
    rounds.push({ stopMs: stopped - stopping, startMs: started - stopped, fresh, service: viaService, raw: viaRaw });
    report.line(
      `restart ${round + 1}: stop ${fixed(stopped - stopping, 0)} ms, start ${fixed(started - stopped, 0)} ms; after start returned: ` +
        `fresh connect ${fixed(fresh.firstSuccessMs, 1)} ms, DatabaseService ${fixed(viaService.firstSuccessMs, 1)} ms (${viaService.failures} failed: ${viaService.errorCodes.join(', ') || '-'}), ` +
        `raw pg.Pool ${fixed(viaRaw.firstSuccessMs, 1)} ms (${viaRaw.failures} failed: ${viaRaw.errorCodes.join(', ') || '-'})`,
    );
  }
  report.line();
  return {
    rounds: rounds.length,
    stopMs: median(rounds.map((r) => r.stopMs)),
    startMs: median(rounds.map((r) => r.startMs)),
    freshConnectMs: median(rounds.map((r) => r.fresh.firstSuccessMs)),
    serviceMs: median(rounds.map((r) => r.service.firstSuccessMs)),
    serviceFailures: rounds.reduce((n, r) => n + r.service.failures, 0),
    rawPoolMs: median(rounds.map((r) => r.raw.firstSuccessMs)),
    rawPoolFailures: rounds.reduce((n, r) => n + r.raw.failures, 0),
    errorCodes: [...new Set(rounds.flatMap((r) => [...r.service.errorCodes, ...r.raw.errorCodes]))],
  };
}
