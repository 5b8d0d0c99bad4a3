import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { dirname, join } from 'node:path';
import { DatabaseService, StatementTimeoutError } from '../../src/index.js';
import { type DatabaseApp, startDatabaseApp } from '../support/database-app.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };
const POOL_MAX = 2;

/**
 * Pipelining and the statement cache asked for behind a transaction pooler: both must be off, because
 * pipelined statements skip the SET LOCAL timeouts (the pooler refuses them in the startup packet) and
 * named statements would outlive the transaction that owns the server connection.
 */
describe('behind PgBouncer in transaction mode, pipelining and the statement cache asked for', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;
  let started: DatabaseApp;
  let db: DatabaseService;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    // One server connection: every statement runs on it, so pg_prepared_statements read through the
    // pooler sees whatever any of them prepared.
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 1 });
    started = await startDatabaseApp({
      url: bouncer.url(),
      sslRootCert: h.caPem,
      pooler: 'transaction',
      pipelining: true,
      statementCacheSize: 50,
      statementTimeoutMs: 200,
      poolMax: POOL_MAX,
      acquireTimeoutMs: 20_000,
      // The client-side backstop (statement timeout + connect timeout) must not be what stops a sleep.
      connectTimeoutMs: 20_000,
      appEnv: 'production',
    });
    db = started.app.get(DatabaseService);
  }, 600_000); // a fresh machine installs pgbouncer first

  afterAll(async () => {
    await started?.close();
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('resolves with neither: no pipeline, no statement cache', () => {
    expect({ pipelining: started.db.config.pipelining, statementCacheSize: started.db.config.statementCacheSize }).toEqual({ pipelining: false, statementCacheSize: 0 });
    expect(started.db.stats().pipeline).toBeUndefined(); // no runner was ever reported to the pool
    expect(db.stats().pipeline).toBeUndefined();
  });

  it('more callers than connections, each SELECT pg_sleep(0.8): every one stopped by the 200 ms statement timeout', async () => {
    // Six serial sleeps on the one server connection take 4.8 s: well within the client-side backstop.
    const results = await Promise.allSettled(Array.from({ length: 3 * POOL_MAX }, () => db.execute('SELECT pg_sleep(0.8)')));
    expect(results.map((r) => (r.status === 'rejected' ? (r.reason as Error).constructor.name : 'completed'))).toEqual(
      results.map(() => StatementTimeoutError.name),
    );
  });

  it('100 concurrent statements: each caller its own answer, and no statement left prepared on the server', async () => {
    const values = Array.from({ length: 100 }, (_, i) => 1000 + i);
    const answers = await Promise.all(values.map((v) => db.fetchval<number>('SELECT $1::int', [v])));
    expect(answers).toEqual(values);
    expect(await db.fetchval<number>('SELECT count(*)::int FROM pg_catalog.pg_prepared_statements')).toBe(0);
  });
});
