import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { DatabaseService, sql } from '../../src/index.js';
import { type DatabaseApp, startDatabaseApp } from '../support/database-app.js';
import { harness } from '../support/harness.js';
import { appConnections, waitForActivity } from '../support/server-faults.js';

const h = harness();
const LIFETIME_S = 1;

/** maxLifetimeSeconds (DATABASE_POOL_MAX_LIFETIME_S) retires connections; each replacement is a new, asserted one. */
describe('maxLifetimeSeconds on a real server', () => {
  const applicationName = `max-lifetime-${process.pid}`;
  let started: DatabaseApp;
  let service: DatabaseService;

  beforeAll(async () => {
    // The idle timeout is far longer than the lifetime: only the lifetime can end a connection here.
    started = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, applicationName, maxLifetimeSeconds: LIFETIME_S, poolIdleTimeoutMs: 60_000, poolMax: 2 });
    service = started.app.get(DatabaseService);
  });
  afterAll(() => started?.close());

  const backendPid = () => service.fetchval<number>(sql`SELECT pg_catalog.pg_backend_pid()`);
  /** Waits (bounded) until the server has no backend `pid` any more. */
  const gone = (pid: number) => waitForActivity(h.tls, (rows) => !rows.some((r) => r.pid === pid), LIFETIME_S * 1000 + 5000);

  it('an idle connection is closed when its lifetime ends, and the next query gets a new connection that passed the assertion', async () => {
    const before = started.db.stats();
    const pid = await backendPid();
    await gone(pid);
    expect(started.db.stats()).toMatchObject({ total: 0, tlsAssertionsFailed: 0 });

    const next = await backendPid();
    expect(next).not.toBe(pid);
    expect(started.db.stats()).toMatchObject({ total: 1, tlsAssertionsPassed: before.tlsAssertionsPassed + 1, tlsAssertionsFailed: 0 });
    expect((await appConnections(h.tls, applicationName)).find((r) => r.pid === next)).toMatchObject({ ssl: true });
  });

  it('a connection in use past its lifetime is not cut: it finishes its work, and is closed (not reused) when released', async () => {
    const client = await started.db.acquire();
    let pid: number;
    try {
      pid = (await client.query('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid;
      // Held until the pool has marked it expired (pg-pool's expiredCount).
      for (const deadline = performance.now() + LIFETIME_S * 1000 + 5000; started.pool.expiredCount < 1; await sleep(20)) {
        if (performance.now() > deadline) throw new Error('the held connection was never marked expired');
      }
      expect((await client.query('SELECT 42 AS answer')).rows[0].answer).toBe(42);
      expect((await appConnections(h.tls, applicationName)).map((r) => r.pid)).toContain(pid);
    } finally {
      started.db.release(client);
    }
    await gone(pid);
    const passed = started.db.stats().tlsAssertionsPassed;
    const next = await backendPid();
    expect(next).not.toBe(pid);
    expect(started.db.stats()).toMatchObject({ tlsAssertionsPassed: passed + 1, tlsAssertionsFailed: 0 });
  });
});
