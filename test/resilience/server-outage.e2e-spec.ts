import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/local-postgres/index.js';
import type { DemoProcess } from '../support/demo-process.js';
import { spawnDemo } from '../support/demo-process.js';
import { type PrivateCluster, startPrivateCluster } from '../support/private-cluster.js';
import { fillConnections, restartCluster, setIdleSessionTimeout, waitForActivity } from '../support/server-faults.js';
import { expectAlive, productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';
import { ms, reportFigure } from './figures.js';
import { type Outcome, send, sendAll, untilExpected } from './http-load.js';
import { OUTAGE_CODES, recovery, sanitizedErrorProblem, tally, unexpectedOutcomes } from './outcome-checks.js';
import { expectFullPoolCapacity } from './pool-capacity.js';
import { watchOutage } from './server-comeback.js';
import { EMAIL_DOMAIN, UsersTraffic, startUsersLoad, countEmails, countUsers } from './users-traffic.js';

const POOL_MAX = 4;

// Restarts and fills the server: a private cluster. Few slots, so filling it is quick.
describe('server outages on a private cluster: the built demo as a process', () => {
  let pc: PrivateCluster;
  const demos: DemoProcess[] = [];

  beforeAll(async () => {
    // Commits durable as on a real server (local clusters turn synchronous_commit off for speed):
    // an immediate shutdown is a crash, and would otherwise lose commits the app had already answered 201 for.
    pc = await startPrivateCluster({ settings: { max_connections: 16, synchronous_commit: 'on' } });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(demos.map(stopDemoProcess));
    await pc?.stop();
  });

  const start = async (scenario: string, settings: Record<string, string>) => {
    const demo = productionEnv(pc.cluster, pc.caPem, scenario, settings);
    const process = await startDemoProcess(demo.env);
    demos.push(process);
    return { ...demo, process };
  };

  it('max_connections taken by others at startup: bounded retries, then exit 1 naming DB_TOO_MANY_CONNECTIONS and the fix', async () => {
    const fill = await fillConnections(pc.cluster);
    try {
      const { env } = productionEnv(pc.cluster, pc.caPem, 'full-startup', { DATABASE_STARTUP_RETRIES: '2' });
      const started = performance.now();
      const demo = spawnDemo(env, await freePort());
      demos.push(demo);
      expect(await demo.exited).toEqual({ code: 1, signal: null });
      const elapsed = performance.now() - started;
      const output = demo.output();
      expect(output).toMatch(/Database not reachable yet \(DB_TOO_MANY_CONNECTIONS\); attempt 2 of 3/);
      expect(output).toMatch(/Database not reachable yet \(DB_TOO_MANY_CONNECTIONS\); attempt 3 of 3/);
      expect(output).toMatch(/Database startup failed \[DB_TOO_MANY_CONNECTIONS\]: .*SQLSTATE 53300.*Lower DATABASE_POOL_MAX/);
      expect(output).not.toContain(pc.cluster.facts.password);
      // Two backoffs of at most 375 and 750 ms, three refused attempts, and node's own startup.
      expect(elapsed).toBeLessThan(375 + 750 + 8000);
      const attempts = 1 + output.split('\n').filter((l) => l.includes('Database not reachable yet (DB_TOO_MANY_CONNECTIONS)')).length;
      reportFigure('max_connections at startup', { slotsTakenByOthers: fill.opened, attempts, exitMs: ms(elapsed) });
    } finally {
      await fill.release();
    }
  }, 60_000);

  it('max_connections taken by others at runtime: 53300 becomes a sanitized 503 with Retry-After, and service resumes once slots free up', async () => {
    const demo = await start('full-runtime', { DATABASE_POOL_MAX: '3', DATABASE_POOL_IDLE_TIMEOUT_MS: '300' });
    // The pool closes its idle connections, so the next request needs a new one.
    await waitForActivity(pc.cluster, (rows) => !rows.some((r) => r.applicationName === demo.applicationName), 5000);
    const post = new UsersTraffic().create();
    const fill = await fillConnections(pc.cluster);
    let refused: Outcome[];
    let health: Outcome;
    let releasedAt: number;
    try {
      refused = await sendAll(demo.process.url(''), [{ method: 'GET', path: '/users?status=suspended', expected: [200] }, post], 1);
      health = await send(demo.process.url(''), { method: 'GET', path: '/health', expected: [200] }, 5000);
    } finally {
      await fill.release();
      releasedAt = performance.now();
    }
    expect(refused.map((o) => sanitizedErrorProblem(o, ['DB_TOO_MANY_CONNECTIONS']))).toEqual([undefined, undefined]);
    expect(refused.map((o) => (o.body as { sqlstate: string }).sqlstate)).toEqual(['53300', '53300']);
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ error: { database: { status: 'down', message: 'too many connections', code: 'DB_TOO_MANY_CONNECTIONS' } } });

    const answer = await untilExpected(demo.process.url(''), { method: 'GET', path: '/users?status=suspended', expected: [200] }, 5000);
    expect(answer.status).toBe(200);
    const traffic = new UsersTraffic();
    expect(unexpectedOutcomes(await sendAll(demo.process.url(''), Array.from({ length: 12 }, traffic.next), 3))).toEqual([]);
    expect(await countEmails(pc.cluster, [post.body.email])).toBe(0);
    await expectAlive(demo.process);
    expect(demo.process.output()).not.toContain(EMAIL_DOMAIN);
    reportFigure('max_connections at runtime', { answeredInMs: refused.map((o) => ms(o.endedAt - o.startedAt)), resumedAfterReleaseMs: ms(answer.endedAt - releasedAt) });
  }, 60_000);

  it('idle sessions killed by the server (idle_session_timeout, as Neon does): the pool drops them and no request fails', async () => {
    const idleKill = await setIdleSessionTimeout(pc.cluster, 300);
    try {
      const demo = await start('idle-kill', { DATABASE_POOL_MAX: String(POOL_MAX) });
      const traffic = new UsersTraffic();
      const outcomes: Outcome[] = [];
      for (let burst = 0; burst < 3; burst++) {
        await sleep(800); // every pooled connection is killed while idle (a request racing the kill could fail)
        const batch = await sendAll(demo.process.url(''), Array.from({ length: 12 }, traffic.next), POOL_MAX);
        batch.forEach(traffic.record);
        outcomes.push(...batch);
      }
      expect(unexpectedOutcomes(outcomes)).toEqual([]);
      const removals = demo.process.output().split('\n').filter((l) => l.includes('An idle connection was closed'));
      expect(removals.length).toBeGreaterThanOrEqual(3); // at least one per pause, seen and dropped
      expect(removals.join('\n')).toContain('SQLSTATE 57P05');
      await expectAlive(demo.process);
      reportFigure('idle sessions killed by the server', { requests: outcomes.length, failed: 0, idleConnectionsDropped: removals.length });
    } finally {
      await idleKill.reset();
    }
  }, 60_000);

  it.each(['fast', 'immediate'] as const)(
    'cluster restart (%s) under steady read/write load: no crash, only sanitized 503s during the outage, service back within 1 s of the server accepting',
    async (mode) => {
      const demo = await start(`restart-${mode}`, {
        DATABASE_POOL_MAX: String(POOL_MAX),
        DATABASE_CONNECT_TIMEOUT_MS: '2000',
        DATABASE_POOL_ACQUIRE_TIMEOUT_MS: '2000',
        DATABASE_STATEMENT_TIMEOUT_MS: '5000',
      });
      const { traffic, outcomes, load } = startUsersLoad(demo.process.url(''), { concurrency: 8, timeoutMs: 15_000 });
      await sleep(500);
      const outage = watchOutage(pc.cluster);
      const { elapsedMs: restartMs } = await restartCluster(pc.cluster, mode);
      const { downAt, upAt } = await outage;
      await sleep(2000);
      await load.stop();

      expect(unexpectedOutcomes(outcomes, OUTAGE_CODES)).toEqual([]);
      const back = recovery(outcomes, upAt);
      expect(back?.failures).toBeGreaterThan(0); // the outage was seen
      expect(back?.stableAt).toBeDefined();
      expect(back!.stableAt! - upAt).toBeLessThan(1000);
      expect(outcomes.filter((o) => o.startedAt > back!.stableAt!).length).toBeGreaterThan(20); // and it kept serving
      expect(await countUsers(pc.cluster, traffic.created)).toBe(traffic.created.length);
      await expectAlive(demo.process);
      await expectFullPoolCapacity(pc.cluster, demo.applicationName, POOL_MAX, demo.process.url(''));
      expect(demo.process.output()).not.toContain(EMAIL_DOMAIN);
      reportFigure(`cluster restart (${mode})`, {
        restartMs: ms(restartMs),
        serverDownMs: ms(upAt - downAt),
        firstSuccessAfterServerUpMs: ms(back!.resumedAt! - upAt),
        allSucceedingAfterServerUpMs: ms(back!.stableAt! - upAt),
        outcomes: tally(outcomes),
      });
    },
    90_000,
  );
});
