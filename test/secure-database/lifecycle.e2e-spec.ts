import { describe, expect, it } from '@jest/globals';
import { ShuttingDownError } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { startDatabaseApp } from '../support/database-app.js';

const h = harness();
let seq = 0;
const appName = () => `lifecycle-${process.pid}-${++seq}`;

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
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(db.stats().total).toBe(0);
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
      await terminate(applicationName);
      await new Promise((resolve) => setTimeout(resolve, 200)); // the 'error' event arrives while nobody is querying
      await expect(client.query('SELECT 1')).rejects.toBeDefined();
      db.release(client);
      expect(db.stats().total).toBe(0);
      await expect(db.withClient((c) => c.query('SELECT 1'))).resolves.toBeDefined();
    } finally {
      await close();
    }
  });

  it('shutdown lets an in-flight query finish, refuses new work, and leaves no connection behind', async () => {
    const applicationName = appName();
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName, shutdownTimeoutMs: 5000 });
    const inFlight = db.withClient((c) => c.query('SELECT pg_sleep(0.5), 42 AS answer'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const closing = close();
    while (!db.closed) await new Promise((resolve) => setTimeout(resolve, 5)); // Nest runs onApplicationShutdown after its other hooks
    await expect(db.acquire()).rejects.toBeInstanceOf(ShuttingDownError);
    const { rows } = await inFlight;
    expect(rows[0].answer).toBe(42);
    await closing;
    await db.close(); // idempotent
    expect(await appConnections(applicationName)).toEqual([]);
  });

  it('after the shutdown timeout, connections still busy are closed hard', async () => {
    const applicationName = appName();
    const { db, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName, shutdownTimeoutMs: 300 });
    const stuck = db.withClient((c) => c.query('SELECT pg_sleep(10)')).catch((e) => db.mapError(e));
    await new Promise((resolve) => setTimeout(resolve, 100));
    const t0 = Date.now();
    await close();
    expect(Date.now() - t0).toBeLessThan(2000);
    expect((await stuck as Error).constructor.name).toBe('ConnectionError');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await appConnections(applicationName)).filter((r) => r.state !== 'active')).toEqual([]);
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
