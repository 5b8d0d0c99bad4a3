import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DemoProcess } from '../support/demo-process.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { appConnections, waitForActivity } from '../support/server-faults.js';
import { type DemoSettings, productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';
import { ms, reportFigure } from './figures.js';
import { sanitizedErrorProblem, tally } from './outcome-checks.js';
import { EMAIL_DOMAIN, startUsersLoad, countEmails, countUsers } from './users-traffic.js';

const h = harness();
const SHUTDOWN_TIMEOUT_MS = 5000;
const WRITERS = 50;

describe('graceful shutdown under write load: the built demo as a process', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let settings: DemoSettings;
  let demo: DemoProcess;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    settings = productionEnv(scratch.cluster, h.caPem, 'shutdown', { DATABASE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) });
    demo = await startDemoProcess(settings.env);
  }, 60_000);

  afterAll(async () => {
    await stopDemoProcess(demo);
    await scratch?.drop();
  });

  it('SIGTERM with 50 POST /users in flight and more coming: every 201 is a row, nothing hangs, exit 0 in time, no connection left', async () => {
    const { traffic, outcomes, load: writers } = startUsersLoad(demo.url(''), {
      mix: ['create'],
      concurrency: WRITERS,
      // Far past the time the process may take to exit: a request still open then has hung.
      timeoutMs: 2 * SHUTDOWN_TIMEOUT_MS + 5000,
    });
    while (traffic.created.length < 200) await sleep(10);

    const inFlightAtSignal = writers.inFlight;
    const signalledAt = performance.now();
    demo.child.kill('SIGTERM');
    const exit = await demo.exited;
    const exitedAt = performance.now();
    await sleep(300); // writers keep sending at the closed port for a moment
    await writers.stop();

    expect(inFlightAtSignal).toBeGreaterThanOrEqual(WRITERS - 5);
    expect(exit).toEqual({ code: 0, signal: null });
    // Before the deadline: the drain did not have to cut requests off.
    expect(exitedAt - signalledAt).toBeLessThan(SHUTDOWN_TIMEOUT_MS);

    expect(outcomes.filter((o) => o.failure === 'timeout')).toEqual([]);
    const refused = outcomes.filter((o) => o.failure === 'network');
    const answered = outcomes.filter((o) => o.status !== undefined);
    // Answered: 201, or the sanitized 503 of a request that reached the pool while it drained.
    expect(answered.filter((o) => o.status !== 201 && sanitizedErrorProblem(o, ['DB_SHUTTING_DOWN']) !== undefined)).toEqual([]);
    // Nothing lost: every 201 is a row, and no request without an answer (closed port, keep-alive
    // connection closed as it was reused, connection still in the listen backlog) was executed.
    expect(await countUsers(scratch.cluster, traffic.created)).toBe(traffic.created.length);
    expect(await countEmails(scratch.cluster, refused.map((o) => (o.spec.body as { email: string }).email))).toBe(0);
    expect(outcomes.filter((o) => o.startedAt > signalledAt).length).toBeGreaterThan(WRITERS); // more did keep coming

    await waitForActivity(scratch.cluster, (rows) => !rows.some((r) => r.applicationName === settings.applicationName), 3000);
    expect(await appConnections(scratch.cluster, settings.applicationName)).toEqual([]);
    expect(demo.output()).not.toContain(EMAIL_DOMAIN);
    expect(demo.output()).not.toMatch(/unhandled|uncaught/i);
    reportFigure('graceful shutdown', {
      writers: WRITERS,
      inFlightAtSignal,
      exitMs: ms(exitedAt - signalledAt),
      created: traffic.created.length,
      afterSignal: tally(outcomes.filter((o) => o.endedAt > signalledAt)),
    });
  }, 60_000);
});
