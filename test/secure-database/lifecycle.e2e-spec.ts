import { describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConnectionError, ShuttingDownError } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { startDatabaseApp } from '../support/database-app.js';
import { waitForActivity } from '../support/server-faults.js';

const h = harness();
let seq = 0;
const appName = () => `lifecycle-${process.pid}-${++seq}`;

/** Polls `condition` every 10 ms; fails after `withinMs`. */
async function until(condition: () => boolean, what: string, withinMs = 5000): Promise<void> {
  for (const deadline = performance.now() + withinMs; !condition(); await sleep(10)) {
    if (performance.now() > deadline) throw new Error(`${what}: not within ${withinMs} ms`);
  }
}

const appConnections = (applicationName: string) =>
  h.tls.withSuperuser(async (admin) => (await admin.query('SELECT pid, state FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows);

const terminate = (applicationName: string) =>
  h.tls.withSuperuser(async (admin) => (await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rowCount);

describe('pool lifecycle on a real server', () => {
  it('idle connections terminated by the server (57P01) are evicted; the process lives and the next query succeeds', async () => {
    const applicationName = appName();
    const { db, pool, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName, poolMax: 4 });
    try {
      const clients = await Promise.all([db.acquire(), db.acquire(), db.acquire()]);
      for (const c of clients) db.release(c);
      expect(db.stats().idle).toBe(3);
      expect(await terminate(applicationName)).toBe(3);
      await until(() => db.stats().total === 0, 'the pool evicting the 3 terminated connections');
      const { rows } = await pool.query('SELECT 1 AS one');
      expect(rows[0].one).toBe(1);
      expect(db.stats().tlsAssertionsPassed).toBe(4); // the fresh connection was asserted too
    } finally {
      await close();
    }
  });

  it('a checked-out connection killed between queries does not crash the process and is destroyed on release', async () => {
    const applicationName = appName();
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName });
    try {
      const client = await db.acquire();
      const errored = once(client, 'error');
      expect(await terminate(applicationName)).toBe(1);
      const [event] = await errored; // the 'error' event arrives while nobody is querying
      expect(event).toMatchObject({ code: '57P01' });
      const error = await client.query('SELECT 1').then(() => undefined, (e: unknown) => db.mapError(e));
      expect(error).toBeInstanceOf(ConnectionError);
      db.release(client);
      expect(db.stats().total).toBe(0);
      await expect(db.withClient(async (c) => (await c.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
    } finally {
      await close();
    }
  });

  it('shutdown lets an in-flight query finish, refuses new work, and leaves no connection behind', async () => {
    const applicationName = appName();
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName, shutdownTimeoutMs: 5000 });
    let settled = false;
    const inFlight = db.withClient((c) => c.query('SELECT pg_sleep(1.5), 42 AS answer')).finally(() => (settled = true));
    await waitForActivity(h.tls, (rows) => rows.some((r) => r.applicationName === applicationName && r.state === 'active'));
    const closing = close();
    await until(() => db.closed, 'close() reaching the pool'); // Nest runs onApplicationShutdown after its other hooks
    await expect(db.acquire()).rejects.toBeInstanceOf(ShuttingDownError);
    expect(settled).toBe(false); // the query was still running when the pool began to drain
    const { rows } = await inFlight;
    expect(rows[0].answer).toBe(42);
    await closing;
    await db.close(); // idempotent
    expect(await appConnections(applicationName)).toEqual([]);
  });

  it('after the shutdown timeout, connections still busy are closed hard, and their backends end', async () => {
    const applicationName = appName();
    const SHUTDOWN_MS = 300;
    // The server notices a closed client socket mid-statement only when it checks (every 100 ms here);
    // otherwise the backend would sleep on alone after the module closed its socket.
    const url = h.tls.url({ options: '-c client_connection_check_interval=100' });
    const { db, close } = await startDatabaseApp({ url, sslRootCert: h.caPem, applicationName, shutdownTimeoutMs: SHUTDOWN_MS });
    const stuck = db.withClient((c) => c.query('SELECT pg_sleep(10)')).then(() => undefined, (e: unknown) => db.mapError(e));
    await waitForActivity(h.tls, (rows) => rows.some((r) => r.applicationName === applicationName && r.state === 'active'));
    const t0 = performance.now();
    await close();
    const elapsed = performance.now() - t0;
    // It waited for the statement until the deadline, then ended: the budget, the pool's 250 ms grace, scheduling.
    expect(elapsed).toBeGreaterThanOrEqual(SHUTDOWN_MS - 10);
    expect(elapsed).toBeLessThan(SHUTDOWN_MS + 250 + 500);
    expect(await stuck).toBeInstanceOf(ConnectionError);
    await waitForActivity(h.tls, (rows) => !rows.some((r) => r.applicationName === applicationName), 3000);
    expect(await appConnections(applicationName)).toEqual([]);
  });

  it('a connection released inside an open transaction is destroyed, never handed to the next caller', async () => {
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, poolMax: 1 });
    try {
      const leakedPid = await db.withClient(async (c) => {
        await c.query('BEGIN');
        return (await c.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
      });
      expect(db.stats().total).toBe(0);
      const next = await db.withClient(async (c) => (await c.query("SELECT pg_backend_pid() AS pid, current_setting('transaction_isolation') AS iso, now() = statement_timestamp() AS fresh")).rows[0]);
      expect(next.pid).not.toBe(leakedPid);
      expect(next.fresh).toBe(true); // not inside an old transaction
    } finally {
      await close();
    }
  });

  it('application_name identifies the app to the server', async () => {
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem });
    try {
      const name = await db.withClient(async (c) => (await c.query('SHOW application_name')).rows[0].application_name);
      expect(name).toBe(db.config.applicationName);
      expect(name.length).toBeGreaterThan(0);
    } finally {
      await close();
    }
  });
});
