import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import type pg from 'pg';
import { DatabaseService, SslNotActiveError, sql } from '../../src/index.js';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { type DatabaseApp, startDatabaseApp } from '../support/database-app.js';
import { harness } from '../support/harness.js';
import { appConnections, waitForActivity } from '../support/server-faults.js';
import { SwitchableForwarder } from '../support/switchable-forwarder.js';
import { startTlsTerminatingProxy } from '../support/tls-terminating-proxy.js';

const h = harness();

/**
 * The TLS assertion runs on every new physical connection, not only at startup: the app starts
 * against the TLS cluster through a forwarder, then the forwarder sends new connections to a TLS
 * terminator in front of the plaintext cluster (as if a proxy on the path started terminating TLS).
 * One role with one password exists on both servers, so only TLS differs.
 */
describe('a connection that fails the TLS assertion after startup', () => {
  const role = `tls_switch_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(18).toString('base64url');
  const applicationName = `tls-after-startup-${process.pid}`;
  let forwarder: SwitchableForwarder;
  let terminator: Awaited<ReturnType<typeof startTlsTerminatingProxy>>;
  let started: DatabaseApp;
  let service: DatabaseService;

  const createRole = (cluster: LocalPostgresCluster) =>
    cluster.withSuperuser(async (admin) => {
      const { rows } = await admin.query('SELECT format($$CREATE ROLE %I LOGIN PASSWORD %L$$, $1::text, $2::text) AS ddl', [role, password]);
      await admin.query(rows[0].ddl);
    });
  const dropRole = (cluster: LocalPostgresCluster) => cluster.withSuperuser((admin) => admin.query(`DROP ROLE IF EXISTS ${admin.escapeIdentifier(role)}`));

  beforeAll(async () => {
    await Promise.all([createRole(h.tls), createRole(h.plain)]);
    terminator = await startTlsTerminatingProxy(h.caPath, h.plain.facts.port);
    forwarder = await SwitchableForwarder.start(h.tls.facts.port);
    started = await startDatabaseApp({
      url: `postgresql://${role}:${password}@127.0.0.1:${forwarder.port}/${h.tls.facts.database}`,
      sslRootCert: h.caPem,
      applicationName,
      poolMax: 2,
      poolIdleTimeoutMs: 60_000,
      startupRetries: 0,
    });
    service = started.app.get(DatabaseService);
  });

  afterAll(async () => {
    await started?.close();
    await forwarder?.close();
    await terminator?.close();
    await Promise.all([dropRole(h.tls), dropRole(h.plain)]);
  });

  const backendPid = () => service.fetchval<number>(sql`SELECT pg_catalog.pg_backend_pid()`);

  it('is destroyed and counted, its caller gets DB_SSL_NOT_ACTIVE, connections already asserted keep serving, and the next good connection works', async () => {
    expect(started.db.stats()).toMatchObject({ total: 1, tlsAssertionsPassed: 1, tlsAssertionsFailed: 0 });
    const [first] = await appConnections(h.tls, applicationName);
    expect(first).toMatchObject({ ssl: true });

    // Hold the one open connection, so the next caller needs a new physical connection.
    const held: pg.PoolClient = await started.db.acquire();
    try {
      forwarder.target = terminator.port;
      for (let attempt = 1; attempt <= 2; attempt++) {
        const error = await backendPid().catch((e: unknown) => e);
        expect(error).toBeInstanceOf(SslNotActiveError);
        expect(error).toMatchObject({ code: 'DB_SSL_NOT_ACTIVE', message: 'SSL required but not active: the server reports this connection unencrypted (pg_stat_ssl)' });
        expect(started.db.stats()).toMatchObject({ total: 1, tlsAssertionsPassed: 1, tlsAssertionsFailed: attempt });
      }
      expect(forwarder.accepted).toBe(3); // startup, then one new connection per failed call: none was reused or retried
      // Destroyed: no session of the app is left on the plaintext server.
      await waitForActivity(h.plain, (rows) => !rows.some((r) => r.applicationName === applicationName));

      // The connection asserted at startup still goes to the TLS server.
      expect((await held.query('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid).toBe(first.pid);
    } finally {
      started.db.release(held);
    }
    expect(await backendPid()).toBe(first.pid); // a free asserted connection serves the next caller

    forwarder.target = h.tls.facts.port;
    const heldAgain = await started.db.acquire();
    try {
      const pid = await backendPid(); // a new physical connection, through the forwarder, to the TLS server
      expect(pid).not.toBe(first.pid);
      expect(started.db.stats()).toMatchObject({ total: 2, tlsAssertionsPassed: 2, tlsAssertionsFailed: 2 });
      expect((await appConnections(h.tls, applicationName)).find((r) => r.pid === pid)).toMatchObject({ ssl: true });
    } finally {
      started.db.release(heldAgain);
    }
    expect(forwarder.accepted).toBe(4);
  });
});
