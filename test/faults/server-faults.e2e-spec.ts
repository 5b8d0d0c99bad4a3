import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { type PrivateCluster, startPrivateCluster } from '../support/private-cluster.js';
import {
  appConnections,
  fillConnections,
  holdLock,
  restartCluster,
  setIdleSessionTimeout,
  terminateBackends,
  waitForActivity,
} from '../support/server-faults.js';

// Each helper against a real server of its own: these faults would disturb every other spec on a shared one.
describe('server faults on a private cluster', () => {
  let pc: PrivateCluster;
  const clients: pg.Client[] = [];

  beforeAll(async () => {
    // Few slots, so fillConnections has little to open.
    pc = await startPrivateCluster({ settings: { max_connections: 12 } });
  }, 60_000);

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
    await pc?.stop();
  });

  /** A verify-full app-role client; its 'error' events are kept, never thrown. */
  const appClient = (applicationName: string) => {
    const client = new pg.Client({ ...pc.cluster.clientConfig(), application_name: applicationName });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  const connected = async (applicationName: string) => {
    const client = appClient(applicationName);
    await client.connect();
    return client;
  };
  const pendingAfter = (ms: number, promise: Promise<unknown>) =>
    Promise.race([promise.then(() => 'settled', () => 'settled'), sleep(ms).then(() => 'pending')]);

  it('appConnections lists an app connection with its TLS state; waitForActivity sees it run', async () => {
    const client = await connected('faults-listing');
    await expect(appConnections(pc.cluster, 'faults-listing')).resolves.toEqual([
      expect.objectContaining({ applicationName: 'faults-listing', user: pc.cluster.facts.user, state: 'idle', ssl: true }),
    ]);
    const running = client.query('SELECT pg_sleep(0.5)');
    const rows = await waitForActivity(pc.cluster, (r) => r.some((a) => a.applicationName === 'faults-listing' && a.state === 'active'));
    expect(rows.filter((a) => a.applicationName === 'faults-listing')).toHaveLength(1);
    await running;
    await client.end();
    await expect(appConnections(pc.cluster, 'faults-listing')).resolves.toEqual([]);
  });

  it('terminateBackends kills only the matching idle or active sessions', async () => {
    const idle = await connected('faults-terminate');
    const busy = await connected('faults-terminate');
    const bystander = await connected('faults-bystander');
    const idleError = once(idle, 'error');
    const inFlight = busy.query('SELECT pg_sleep(30)');
    await waitForActivity(pc.cluster, (r) => r.some((a) => a.applicationName === 'faults-terminate' && a.state === 'active'));

    await expect(terminateBackends(pc.cluster, { applicationName: 'faults-terminate', state: 'idle' })).resolves.toBe(1);
    await expect(idleError).resolves.toEqual([expect.objectContaining({ code: '57P01' })]);
    expect(await pendingAfter(100, inFlight)).toBe('pending');

    await expect(terminateBackends(pc.cluster, { applicationName: 'faults-terminate', state: 'active' })).resolves.toBe(1);
    await expect(inFlight).rejects.toMatchObject({ code: '57P01' });
    await expect(bystander.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
    await expect(terminateBackends(pc.cluster, { applicationName: 'faults-bystander' })).resolves.toBe(1);
  });

  it('holdLock blocks a query on the table until release()', async () => {
    const client = await connected('faults-lock');
    await client.query('CREATE TABLE fault_lock (id int)');
    const lock = await holdLock(pc.cluster, pc.cluster.facts.database, 'fault_lock');
    const blocked = client.query('SELECT count(*)::int AS n FROM fault_lock');
    const rows = await waitForActivity(pc.cluster, (r) => r.some((a) => a.applicationName === 'faults-lock' && a.waitEventType === 'Lock'));
    expect(rows.find((a) => a.pid === lock.pid)).toBeDefined();
    expect(await pendingAfter(100, blocked)).toBe('pending');
    await lock.release();
    await expect(blocked).resolves.toMatchObject({ rows: [{ n: 0 }] });
    await lock.release(); // idempotent
  });

  it('setIdleSessionTimeout ends idle sessions with 57P05, and reset() turns it off again', async () => {
    const timeout = await setIdleSessionTimeout(pc.cluster, 300);
    try {
      const client = await connected('faults-idle');
      const [error] = await once(client, 'error');
      expect(error).toMatchObject({ code: '57P05' });
    } finally {
      await timeout.reset();
    }
    const client = await connected('faults-idle');
    await expect(client.query('SHOW idle_session_timeout')).resolves.toMatchObject({ rows: [{ idle_session_timeout: '0' }] });
  });

  it('fillConnections makes the next app connection fail with 53300, while a superuser still gets in', async () => {
    const filled = await fillConnections(pc.cluster);
    try {
      expect(filled.opened).toBeGreaterThan(0);
      await expect(appClient('faults-fill').connect()).rejects.toMatchObject({ code: '53300' });
      await expect(pc.cluster.withSuperuser((admin) => admin.query('SELECT 1 AS one'))).resolves.toMatchObject({ rows: [{ one: 1 }] });
    } finally {
      await filled.release();
    }
    await expect(connected('faults-fill').then(async (c) => (await c.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
  });

  it('fillConnections(count) opens exactly count connections', async () => {
    const filled = await fillConnections(pc.cluster, 3);
    try {
      expect(filled.opened).toBe(3);
      await expect(appConnections(pc.cluster, 'fault-filler')).resolves.toHaveLength(3);
    } finally {
      await filled.release();
    }
  });

  it('restartCluster restarts the server: open sessions end, new ones work', async () => {
    const startTime = () => pc.cluster.withSuperuser(async (admin) => (await admin.query('SELECT pg_postmaster_start_time() AS t')).rows[0].t as Date);
    const before = await startTime();
    const client = await connected('faults-restart');
    const clientError = once(client, 'error');
    const calledAt = Date.now();
    const outer = performance.now();
    const { elapsedMs } = await restartCluster(pc.cluster, 'fast');
    const outerMs = performance.now() - outer;
    await expect(clientError).resolves.toEqual([expect.objectContaining({ code: '57P01' })]); // fast shutdown terminates sessions
    const restartedAt = (await startTime()).getTime();
    expect(restartedAt).toBeGreaterThan(before.getTime());
    // elapsedMs measures the restart itself: the new server started inside it (server clock, whole ms), and it is not longer than the call.
    expect(restartedAt).toBeGreaterThanOrEqual(calledAt - 1);
    expect(restartedAt - calledAt).toBeLessThanOrEqual(elapsedMs + 1);
    expect(elapsedMs).toBeLessThanOrEqual(outerMs);
    await expect(connected('faults-restart').then(async (c) => (await c.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
  });
});
