import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { harness, scratchDatabase } from '../support/harness.js';
import { LogCapture } from '../support/log-capture.js';
import { appConnections, holdLock, waitForActivity } from '../support/server-faults.js';
import { type InProcessDemo, productionEnv, startDemoInProcess } from './demo-under-test.js';
import { type Outcome, type RequestSpec, send, sendAll } from './http-load.js';
import { isExpected, sanitizedErrorProblem, tally } from './outcome-checks.js';
import { expectFullPoolCapacity } from './pool-capacity.js';
import { ms, reportFigure } from './figures.js';
import { EMAIL_DOMAIN, UsersTraffic, countEmails, countUsers } from './users-traffic.js';

const h = harness();
const POOL_MAX = 4;
const REQUESTS = 200;
const ACQUIRE_TIMEOUT_MS = 500;
// The one allowance for what 200 concurrent requests on a shared 2-core machine add to any wait here
// (HTTP parsing and scheduling in the app and in this process): every bound below is a configured
// timeout plus this.
const MARGIN_MS = 2500;
// Each excess request has failed by then, counted from its own start: the acquire timeout, no lock wait.
const EXHAUSTED_WITHIN_MS = ACQUIRE_TIMEOUT_MS + MARGIN_MS;
// /health answers within its 1 s ping timeout.
const HEALTH_WITHIN_MS = 1000 + MARGIN_MS;
// The exhaustion test holds its lock until the excess has failed, at most EXHAUSTED_WITHIN_MS after
// the requests started (/health runs meanwhile). The statement timeout outlasts that, so the blocked
// statements end on the release, never on the timeout; it is below lock_timeout, so it is the one
// that fires in the statement-timeout test.
const STATEMENT_TIMEOUT_MS = 2 * EXHAUSTED_WITHIN_MS;
const LOCK_TIMEOUT_MS = 4 * EXHAUSTED_WITHIN_MS;

// In-process, so the pool's own counters can show a leaked client; the lock is on a scratch database.
describe('statements blocked behind a lock: pool exhaustion and statement timeout (demo in-process)', () => {
  const logs = new LogCapture();
  const saved = { ...process.env };
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let demo: InProcessDemo;
  let applicationName: string;
  const traffic = new UsersTraffic();

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    const settings = productionEnv(scratch.cluster, h.caPem, 'locks', {
      DATABASE_POOL_MAX: String(POOL_MAX),
      DATABASE_POOL_ACQUIRE_TIMEOUT_MS: String(ACQUIRE_TIMEOUT_MS),
      DATABASE_STATEMENT_TIMEOUT_MS: String(STATEMENT_TIMEOUT_MS),
      DATABASE_LOCK_TIMEOUT_MS: String(LOCK_TIMEOUT_MS),
    });
    applicationName = settings.applicationName;
    demo = await startDemoInProcess(settings.env, logs);
  }, 60_000);

  afterAll(async () => {
    await demo?.app.close();
    await scratch?.drop();
    process.env = saved;
  });

  /** Idle pool: nothing in flight or queued, every open connection idle, none beyond the maximum. */
  const expectPoolIdle = async () => {
    for (const deadline = performance.now() + 2000; ; await sleep(20)) {
      const { total, idle, waiting, inFlight } = demo.db.stats();
      if ((inFlight === 0 && waiting === 0 && idle === total) || performance.now() > deadline) {
        expect({ inFlight, waiting, busy: total - idle }).toEqual({ inFlight: 0, waiting: 0, busy: 0 });
        expect(total).toBeLessThanOrEqual(POOL_MAX);
        return;
      }
    }
  };

  it('200 concurrent requests with every slot held by a lock-blocked statement: the excess fails fast with 503, then all drains, nothing leaks', async () => {
    const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
    const specs: RequestSpec[] = Array.from({ length: REQUESTS }, (_, i) => (i % 2 ? traffic.create() : { method: 'GET', path: '/users?status=suspended', expected: [200] }));
    const started = performance.now();
    let outcomes: Outcome[];
    let health: Outcome;
    let releasedAt: number;
    try {
      let settled = 0;
      const all = Promise.all(specs.map((spec) => send(demo.baseUrl, spec, 15_000).finally(() => settled++)));
      await waitForActivity(scratch.cluster, (rows) => rows.filter((r) => r.applicationName === applicationName && r.waitEventType === 'Lock').length === POOL_MAX);
      const healthAnswer = send(demo.baseUrl, { method: 'GET', path: '/health', expected: [200] }, 5000);
      // Release only once the excess has failed (or could have: a late one would then be served, and the tally below says so).
      while (settled < specs.length - POOL_MAX && performance.now() < started + EXHAUSTED_WITHIN_MS) await sleep(10);
      health = await healthAnswer;
      releasedAt = performance.now();
      await lock.release();
      outcomes = await all;
    } finally {
      await lock.release();
    }
    const exhausted = outcomes.filter((o) => o.status === 503);
    const served = outcomes.filter(isExpected);
    expect(tally(outcomes)).toEqual({ '503 DB_POOL_EXHAUSTED': specs.length - POOL_MAX, ...tally(served) });
    expect(served).toHaveLength(POOL_MAX);
    expect(exhausted.map((o) => sanitizedErrorProblem(o, ['DB_POOL_EXHAUSTED'])).filter(Boolean)).toEqual([]);
    // Fast: each waited the acquire timeout, never for the lock.
    const waits = exhausted.map((o) => o.endedAt - o.startedAt);
    expect(Math.min(...waits)).toBeGreaterThanOrEqual(ACQUIRE_TIMEOUT_MS - 50);
    expect(Math.max(...waits)).toBeLessThan(EXHAUSTED_WITHIN_MS);
    // The blocked ones were held by the lock and answered after its release (200/201 in the tally, not a 57014).
    expect(releasedAt - started).toBeLessThan(STATEMENT_TIMEOUT_MS);
    expect(served.filter((o) => o.endedAt < releasedAt)).toEqual([]);
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'error', error: { database: { status: 'down', message: 'pool exhausted' } } });
    expect(health.endedAt - health.startedAt).toBeLessThan(HEALTH_WITHIN_MS);
    reportFigure('pool exhaustion', {
      requests: REQUESTS,
      poolMax: POOL_MAX,
      acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
      exhausted: exhausted.length,
      fastestFailureMs: ms(Math.min(...waits)),
      slowestFailureMs: ms(Math.max(...waits)),
      healthDownMs: ms(health.endedAt - health.startedAt),
    });

    // Nothing lost: every 201 is a row.
    const createdIds = served.filter((o) => o.status === 201).map((o) => (o.body as { id: string }).id);
    expect(await countUsers(scratch.cluster, createdIds)).toBe(createdIds.length);
    await expectPoolIdle();
    await expectFullPoolCapacity(scratch.cluster, applicationName, POOL_MAX, demo.baseUrl);
    await expectPoolIdle();
    expect(logs.text()).not.toContain(EMAIL_DOMAIN);
  }, 60_000);

  it('a statement blocked longer than DATABASE_STATEMENT_TIMEOUT_MS: sanitized 503, and the server-side statement is gone', async () => {
    const post = traffic.create();
    const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
    let outcomes: Outcome[];
    let activeAfter: number;
    try {
      outcomes = await sendAll(demo.baseUrl, [{ method: 'GET', path: '/users?status=suspended', expected: [200] }, post], 2);
      // Still inside the lock: nothing of the app may be running or waiting on the server any more.
      activeAfter = (await appConnections(scratch.cluster, applicationName)).filter((r) => r.state !== 'idle').length;
    } finally {
      await lock.release();
    }
    expect(outcomes.map((o) => sanitizedErrorProblem(o, ['DB_STATEMENT_TIMEOUT']))).toEqual([undefined, undefined]);
    expect(outcomes.map((o) => (o.body as { sqlstate: string }).sqlstate)).toEqual(['57014', '57014']);
    for (const o of outcomes) {
      expect(o.endedAt - o.startedAt).toBeGreaterThanOrEqual(STATEMENT_TIMEOUT_MS - 50);
      expect(o.endedAt - o.startedAt).toBeLessThan(STATEMENT_TIMEOUT_MS + MARGIN_MS);
    }
    expect(activeAfter).toBe(0);
    reportFigure('statement timeout', { statementTimeoutMs: STATEMENT_TIMEOUT_MS, answeredAfterMs: outcomes.map((o) => ms(o.endedAt - o.startedAt)) });
    expect(await countEmails(scratch.cluster, [post.body.email])).toBe(0); // cancelled, so rolled back
    await expectPoolIdle();
    expect((await sendAll(demo.baseUrl, Array.from({ length: 12 }, traffic.next), POOL_MAX)).filter((o) => !isExpected(o))).toEqual([]);
    expect(logs.text()).not.toContain(EMAIL_DOMAIN);
  }, 30_000);
});
