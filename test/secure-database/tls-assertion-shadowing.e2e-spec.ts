import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { SslNotActiveError } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { startupError } from '../support/database-app.js';
import { startTlsTerminatingProxy } from '../support/tls-terminating-proxy.js';

const h = harness();
const quick = { startupRetries: 0, connectTimeoutMs: 3000 };

// What the assertion used to send: every name resolved through search_path.
const UNQUALIFIED_ASSERTION = 'SELECT s.ssl FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()';

/**
 * The app's own role forges TLS: it owns a schema, shadows pg_stat_ssl with a view that always says
 * `ssl = true`, and puts that schema before pg_catalog in search_path. Behind a TLS-terminating proxy
 * (verified TLS to the client, plaintext to the server) only the server-side check can tell.
 */
describe('the TLS assertion cannot be faked by the app role shadowing pg_catalog', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let proxy: Awaited<ReturnType<typeof startTlsTerminatingProxy>>;
  let proxiedUrl: (params?: Record<string, string>) => string;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.plain);
    const app = new pg.Client(scratch.cluster.clientConfig());
    await app.connect();
    try {
      await app.query(`CREATE SCHEMA forged`);
      await app.query(`CREATE VIEW forged.pg_stat_ssl AS
        SELECT pg_catalog.pg_backend_pid() AS pid, true AS ssl, 'TLSv1.3'::text AS version, 'TLS_AES_256_GCM_SHA384'::text AS cipher`);
      await app.query(`CREATE FUNCTION forged.pg_backend_pid() RETURNS int LANGUAGE sql AS 'SELECT pg_catalog.pg_backend_pid()'`);
    } finally {
      await app.end();
    }
    proxy = await startTlsTerminatingProxy(h.caPath, h.plain.facts.port);
    proxiedUrl = (params = {}) => scratch.cluster.url(params, { host: 'localhost' }).replace(`:${h.plain.facts.port}/`, `:${proxy.port}/`);
  });

  afterAll(async () => {
    await proxy?.close();
    await h.plain.withSuperuser((admin) => admin.query(`ALTER ROLE ${admin.escapeIdentifier(h.plain.facts.user)} IN DATABASE ${scratch.cluster.facts.database} RESET search_path`));
    await scratch?.drop();
  });

  it('the forgery works against an unqualified assertion (the attack is real)', async () => {
    const client = new pg.Client({ ...scratch.cluster.clientConfig(), options: '-c search_path=forged,pg_catalog' });
    await client.connect();
    try {
      expect((await client.query(UNQUALIFIED_ASSERTION)).rows[0].ssl).toBe(true);
    } finally {
      await client.end();
    }
  });

  it('search_path in the URL options: startup refused with DB_SSL_NOT_ACTIVE', async () => {
    const error = await startupError({ url: proxiedUrl({ options: '-c search_path=forged,pg_catalog' }), sslRootCert: h.caPem, ...quick });
    expect(error).toBeInstanceOf(SslNotActiveError);
    expect((error as SslNotActiveError).code).toBe('DB_SSL_NOT_ACTIVE');
    expect(error.message).toBe('SSL required but not active: the server reports this connection unencrypted (pg_stat_ssl)');
  });

  it('search_path set on the role (ALTER ROLE … SET): startup refused with DB_SSL_NOT_ACTIVE', async () => {
    await h.plain.withSuperuser((admin) =>
      admin.query(`ALTER ROLE ${admin.escapeIdentifier(h.plain.facts.user)} IN DATABASE ${scratch.cluster.facts.database} SET search_path = forged, pg_catalog`),
    );
    const error = await startupError({ url: proxiedUrl(), sslRootCert: h.caPem, ...quick });
    expect(error).toBeInstanceOf(SslNotActiveError);
    expect(error.message).toContain('(pg_stat_ssl)');
  });
});
