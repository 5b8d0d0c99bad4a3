import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import type { DemoProcess } from '../support/demo-process.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { appConnections, holdLock, terminateBackends, waitForActivity } from '../support/server-faults.js';
import { type DemoSettings, expectAlive, productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';
import { send, sendAll } from './http-load.js';
import { sanitizedErrorProblem, unexpectedOutcomes } from './outcome-checks.js';
import { ms, reportFigure } from './figures.js';
import { expectFullPoolCapacity } from './pool-capacity.js';
import { EMAIL_DOMAIN, UsersTraffic, countEmails } from './users-traffic.js';

const h = harness();
const POOL_MAX = 4;

// pg_terminate_backend only touches the demo's own backends (found by application_name), so the shared cluster is fine.
describe('connections terminated by the server (57P01): the built demo as a process', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let settings: DemoSettings;
  let demo: DemoProcess;
  const traffic = new UsersTraffic(['read', 'list']);

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    settings = productionEnv(scratch.cluster, h.caPem, 'terminate', {
      DATABASE_POOL_MAX: String(POOL_MAX),
      DATABASE_POOL_IDLE_TIMEOUT_MS: '60000', // the pool keeps its connections between the steps
      DATABASE_STATEMENT_TIMEOUT_MS: '10000',
    });
    demo = await startDemoProcess(settings.env);
    for (const o of await sendAll(demo.url(''), Array.from({ length: 8 }, () => traffic.create()), 4)) traffic.record(o);
    expect(traffic.created).toHaveLength(8);
  }, 60_000);

  afterAll(async () => {
    await stopDemoProcess(demo);
    await scratch?.drop();
  });

  it('idle connections terminated while the pool is idle: not one read fails, the pool reconnects', async () => {
    const idleLogLines = () => demo.output().split('\n').filter((l) => l.includes('An idle connection was closed')).length;
    for (let round = 1; round <= 3; round++) {
      await expectFullPoolCapacity(scratch.cluster, settings.applicationName, POOL_MAX, demo.url('')); // leaves POOL_MAX idle connections
      const before = await appConnections(scratch.cluster, settings.applicationName);
      expect(before.map((r) => r.state)).toEqual(Array(POOL_MAX).fill('idle'));

      expect(await terminateBackends(scratch.cluster, { applicationName: settings.applicationName, state: 'idle' })).toBe(POOL_MAX);
      const reads = await sendAll(demo.url(''), Array.from({ length: 40 }, traffic.next), POOL_MAX);

      expect(unexpectedOutcomes(reads)).toEqual([]);
      const after = await appConnections(scratch.cluster, settings.applicationName);
      expect(after.length).toBeGreaterThan(0);
      expect(after.filter((r) => before.some((b) => b.pid === r.pid))).toEqual([]); // only new connections
      expect(idleLogLines()).toBe(round * POOL_MAX); // the pool noticed each one and dropped it
    }
    expect(demo.output()).toContain('DB_CONNECTION_FAILED (SQLSTATE 57P01)'); // logged by code, no driver text
    await expectFullPoolCapacity(scratch.cluster, settings.applicationName, POOL_MAX, demo.url(''));
    await expectAlive(demo);
    reportFigure('idle connections terminated', { rounds: 3, terminatedPerRound: POOL_MAX, readsRightAfter: 3 * 40, failedReads: 0 });
  }, 60_000);

  it('a busy connection terminated mid-query: that request gets a sanitized 503, the process lives, the pool heals', async () => {
    const post = traffic.create();
    const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
    // Both statements wait on the lock, so they are mid-query (state active) when their backends die.
    let terminateCalledAt = 0;
    const blocked = Promise.all([send(demo.url(''), { method: 'GET', path: '/users?status=suspended', expected: [200] }, 15_000), send(demo.url(''), post, 15_000)]);
    try {
      await waitForActivity(scratch.cluster, (rows) => rows.filter((r) => r.applicationName === settings.applicationName && r.waitEventType === 'Lock').length === 2);
      terminateCalledAt = performance.now();
      expect(await terminateBackends(scratch.cluster, { applicationName: settings.applicationName, state: 'active' })).toBe(2);
    } finally {
      await lock.release();
    }
    const outcomes = await blocked;

    expect(outcomes.map((o) => sanitizedErrorProblem(o, ['DB_CONNECTION_FAILED']))).toEqual([undefined, undefined]);
    expect(outcomes.map((o) => (o.body as { sqlstate: string }).sqlstate)).toEqual(['57P01', '57P01']);
    expect(await countEmails(scratch.cluster, [post.body.email])).toBe(0); // the INSERT died with its backend
    expect(unexpectedOutcomes(await sendAll(demo.url(''), Array.from({ length: 20 }, traffic.next), POOL_MAX))).toEqual([]);
    await expectFullPoolCapacity(scratch.cluster, settings.applicationName, POOL_MAX, demo.url(''));
    await expectAlive(demo);
    expect(demo.output()).not.toContain(EMAIL_DOMAIN);
    reportFigure('busy connection terminated', { answeredAfterTerminateCallMs: outcomes.map((o) => ms(o.endedAt - terminateCalledAt)) });
  }, 60_000);
});
