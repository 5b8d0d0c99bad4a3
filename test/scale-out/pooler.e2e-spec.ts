import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { dirname, join } from 'node:path';
import pg from 'pg';
import {
  ConnectionError,
  DatabaseService,
  LockTimeoutError,
  SessionUnavailableError,
  SslNotActiveError,
  StatementTimeoutError,
  UniqueViolationError,
  sql,
} from '../../src/index.js';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import request from 'supertest';
import { createHealthApp } from '../health/health-app.js';
import { type DatabaseApp, startDatabaseApp, startupError } from '../support/database-app.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import { holdLock } from '../support/server-faults.js';

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };
const SERVER_TIMEOUTS = ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'];

/** The upstream's app-role backends: the server connections PgBouncer holds (and nothing else uses this scratch database). */
async function serverConnections(cluster: LocalPostgresCluster): Promise<number> {
  return cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query<{ n: number }>(
      "SELECT count(*)::int AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND usename = $1 AND datname = $2",
      [cluster.facts.user, cluster.facts.database],
    );
    return rows[0].n;
  });
}

/** A plain pg client through PgBouncer, as another application sharing the pooler. */
async function rawClient(bouncer: Pgbouncer, cluster: LocalPostgresCluster): Promise<pg.Client> {
  const client = new pg.Client({ ...cluster.clientConfig(), host: bouncer.host, port: bouncer.port, ssl: { ca: h.caPem } });
  client.on('error', () => undefined);
  await client.connect();
  return client;
}

describe('behind PgBouncer in transaction mode (client TLS, server TLS verify-full)', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;
  let started: DatabaseApp;
  let db: DatabaseService;
  const log = jest.spyOn(Logger.prototype, 'log');

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 5 });
    started = await startDatabaseApp({
      url: bouncer.url(),
      sslRootCert: h.caPem,
      pooler: 'transaction',
      appEnv: 'production',
      statementTimeoutMs: 500,
      lockTimeoutMs: 300,
      poolMax: 20,
      acquireTimeoutMs: 10_000,
    });
    db = started.app.get(DatabaseService);
    await db.execute('CREATE TABLE items (id int PRIMARY KEY, owner text NOT NULL)');
  }, 600_000); // a fresh machine installs pgbouncer first

  afterAll(async () => {
    log.mockRestore();
    await started?.close();
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('logs the pooler and the two TLS legs, each for what it is', () => {
    const line = log.mock.calls.map((c) => String(c[0])).find((l) => l.startsWith('Connected to'));
    expect(line).toContain(`Connected to 127.0.0.1:${bouncer.port}/${scratch.cluster.facts.database}`);
    expect(line).toContain('through a transaction pooler (DATABASE_POOLER; timeouts set per transaction with SET LOCAL)');
    expect(line).toMatch(/client-to-pooler leg TLS TLSv1\.[23] \(\w+/);
    expect(line).toContain('pooler identity verified (chain and host name)');
    expect(line).toMatch(/pooler-to-server leg \(pg_stat_ssl\) TLS TLSv1\.[23] /);
    expect(started.db.lastTls).toMatchObject({ ssl: true, serverLeg: 'pooler-to-server', clientLeg: { encrypted: true, verified: true } });
  });

  it('health says which leg each TLS fact is about', async () => {
    const { app } = await createHealthApp([{ url: bouncer.url(), sslRootCert: h.caPem, pooler: 'transaction', appEnv: 'production' }]);
    try {
      const res = await request(app.getHttpServer()).get('/health/ready');
      expect(res.status).toBe(200);
      expect(res.body.info.database).toMatchObject({
        tls: true, // the client-to-pooler leg, proved on the socket
        tlsProtocol: expect.stringMatching(/^TLSv1\.[23]$/),
        serverIdentityVerified: true,
        pooler: 'transaction',
        serverLegTls: true, // pg_stat_ssl: the pooler-to-server leg
        serverLegTlsProtocol: expect.stringMatching(/^TLSv1\.[23]$/),
        role: 'primary',
      });
    } finally {
      await app.close();
    }
  });

  it('sends no server settings in the startup packet (PgBouncer would refuse them)', () => {
    for (const name of SERVER_TIMEOUTS) expect(started.db.config.client).not.toHaveProperty(name);
  });

  it('queries and transactions work; a rolled-back transaction leaves nothing', async () => {
    expect(await db.execute(sql`INSERT INTO items VALUES (${1}, ${'a'}), (${2}, ${'b'})`)).toBe(2);
    expect(await db.fetch(sql`SELECT id, owner FROM items ORDER BY id`)).toEqual([{ id: 1, owner: 'a' }, { id: 2, owner: 'b' }]);
    expect(await db.fetchval(sql`SELECT owner FROM items WHERE id = ${2}`)).toBe('b');
    await db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO items VALUES (${3}, ${'c'})`);
      expect(await tx.fetchval<number>('SELECT count(*)::int FROM items')).toBe(3);
    });
    await expect(
      db.transaction(async (tx) => {
        await tx.execute(sql`INSERT INTO items VALUES (${4}, ${'d'})`);
        throw new Error('abandon');
      }),
    ).rejects.toThrow('abandon');
    expect(await db.fetchval<number>('SELECT count(*)::int FROM items')).toBe(3);
  });

  it('the statement timeout cancels pg_sleep behind the pooler, alone and inside a transaction', async () => {
    for (const run of [() => db.fetch('SELECT pg_sleep(5)'), () => db.transaction((tx) => tx.fetch('SELECT pg_sleep(5)'), { retries: 0 })]) {
      const t0 = performance.now();
      const error = await run().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StatementTimeoutError);
      expect(error).toMatchObject({ sqlstate: '57014' });
      expect(performance.now() - t0).toBeLessThan(2500);
    }
    // The next statement on the same pooled connection works: the failed transaction was rolled back, not left open.
    expect(await db.fetchval('SELECT 1')).toBe(1);
  });

  it('the lock timeout holds too', async () => {
    const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'items');
    try {
      await expect(db.execute(sql`UPDATE items SET owner = ${'x'} WHERE id = ${1}`)).rejects.toBeInstanceOf(LockTimeoutError);
    } finally {
      await lock.release();
    }
  });

  it('the timeouts are SET LOCAL: nothing is left on the server connections other clients of the pooler get', async () => {
    await Promise.all(Array.from({ length: 10 }, () => db.fetchval('SELECT 1')));
    const other = await rawClient(bouncer, scratch.cluster);
    try {
      for (let i = 0; i < 5; i++) {
        const { rows } = await other.query<{ s: string }>("SELECT current_setting('statement_timeout') AS s");
        expect(rows[0].s).toBe('0');
      }
    } finally {
      await other.end();
    }
  });

  it('errors are sanitized, and a failed statement does not cost its connection', async () => {
    const before = started.db.stats().tlsAssertionsPassed;
    const error = await db.execute(sql`INSERT INTO items VALUES (${1}, ${'secret-owner'})`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UniqueViolationError);
    expect((error as Error).message).toBe('unique constraint violated (SQLSTATE 23505)');
    expect(JSON.stringify({ m: (error as Error).message, c: (error as Error).cause })).not.toMatch(/items_pkey|secret-owner/);
    expect(await db.fetchval('SELECT 1')).toBe(1);
    expect(started.db.stats().tlsAssertionsPassed).toBe(before);
  });

  it('200 concurrent callers share 5 server connections; each transaction sees its own writes', async () => {
    let peak = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, await serverConnections(scratch.cluster));
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    })();
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        db.transaction(async (tx) => {
          await tx.execute(sql`INSERT INTO items VALUES (${1000 + i}, ${`caller-${i}`})`);
          await tx.fetch('SELECT pg_sleep(0.005)');
          return tx.fetchval<string>(sql`SELECT owner FROM items WHERE id = ${1000 + i}`);
        }),
      ),
    );
    sampling = false;
    await sampler;
    expect(results).toEqual(Array.from({ length: 200 }, (_, i) => `caller-${i}`));
    expect(await db.fetchval<number>('SELECT count(*)::int FROM items WHERE id >= 1000')).toBe(200);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(5);
    expect(started.db.stats().total).toBeGreaterThan(5); // the app's side really had more connections in use
  });

  it('refuses what would leave state on a shared server connection, saying why and what to use instead', async () => {
    const refused = [
      'SET search_path = public',
      '/* x */ RESET ALL',
      'LISTEN jobs',
      'PREPARE p AS SELECT 1',
      'CREATE TEMP TABLE t (x int)',
      // Temporary objects by every spelling (each would shadow a real table for the pooler's other clients).
      "CREATE TEMP VIEW items AS SELECT 1 AS id, 'shadow' AS owner",
      'CREATE TABLE pg_temp.items (id int, owner text)',
      'SELECT * INTO TEMP items FROM items',
      'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
      'SELECT pg_catalog.pg_advisory_lock(1)',
      "SELECT pg_catalog.set_config('app.tenant_id', '42', false)",
    ];
    for (const statement of refused) {
      const error = await db.execute(statement).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(SessionUnavailableError);
      expect((error as Error).message).toMatch(/transaction pooler|server session/);
      const inTransaction = await db.transaction((tx) => tx.execute(statement)).catch((e: unknown) => e);
      expect(inTransaction).toBeInstanceOf(SessionUnavailableError);
    }
    // Their transaction-scoped forms run.
    await db.transaction(async (tx) => {
      await tx.execute('CREATE TEMP TABLE scratch (x int) ON COMMIT DROP');
      await tx.fetch('SELECT pg_catalog.pg_advisory_xact_lock(1)');
      await tx.fetch("SELECT pg_catalog.set_config('app.tenant_id', '42', true)");
    });
    const listen = await db.transaction((tx) => tx.execute('LISTEN jobs')).catch((e: unknown) => e);
    expect((listen as Error).message).toMatch(/^LISTEN needs a server session of its own/);
    const withConnection = await db.withConnection(async () => 'ran').catch((e: unknown) => e);
    expect(withConnection).toBeInstanceOf(SessionUnavailableError);
    expect((withConnection as Error).message).toContain('DATABASE_DIRECT_URL');
    // Every supported major (14 to 18, measured) refuses VACUUM in the same round trip as another statement (25001).
    const vacuum = await db.execute('VACUUM items').catch((e: unknown) => e);
    expect(vacuum).toBeInstanceOf(SessionUnavailableError);
    expect((vacuum as Error).message).toContain('use withConnection() with DATABASE_DIRECT_URL');
  });

  it('SET LOCAL inside a transaction is allowed and holds for that transaction only', async () => {
    const error = await db
      .transaction(async (tx) => {
        await tx.execute('SET LOCAL statement_timeout = 100');
        await tx.fetch('SELECT pg_sleep(0.3)');
      }, { retries: 0 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StatementTimeoutError);
    expect(await db.fetchval("SELECT current_setting('statement_timeout')")).toBe('500ms');
  });

  it('streams run in a transaction of their own, under the timeouts', async () => {
    const ids: number[] = [];
    for await (const row of db.stream<{ id: number }>('SELECT id FROM items WHERE id >= 1000 ORDER BY id', [], { batchSize: 50 })) ids.push(row.id);
    expect(ids).toHaveLength(200);
    const slow = (async () => {
      for await (const _ of db.stream('SELECT pg_sleep(5)')) void _;
    })();
    await expect(slow).rejects.toBeInstanceOf(StatementTimeoutError);
    expect(await db.fetchval('SELECT 1')).toBe(1);
  });
});

describe('withConnection routed to DATABASE_DIRECT_URL', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;
  let started: DatabaseApp;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 2 });
    started = await startDatabaseApp({
      url: bouncer.url(),
      directUrl: scratch.cluster.url(),
      sslRootCert: h.caPem,
      pooler: 'transaction',
      statementTimeoutMs: 700,
    });
  }, 600_000);

  afterAll(async () => {
    await started?.close();
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('runs on one direct session: same backend throughout, the startup settings in place, session work allowed', async () => {
    const db = started.app.get(DatabaseService);
    expect(started.db.direct?.lastTls).toMatchObject({ ssl: true, serverLeg: 'direct', verified: true });
    const seen = await db.withConnection(async (c) => {
      const first = await c.fetchval<number>('SELECT pg_backend_pid()');
      await c.execute('SET search_path = pg_catalog');
      await c.fetchval('SELECT pg_advisory_lock(42)');
      const second = await c.fetchval<number>('SELECT pg_backend_pid()');
      return { first, second, timeout: await c.fetchval<string>("SELECT current_setting('statement_timeout')") };
    });
    expect(seen.first).toBe(seen.second);
    expect(seen.timeout).toBe('700ms');
    // The direct connection went back reset: advisory lock released, settings as configured.
    const locks = await scratch.cluster.withSuperuser(async (admin) => (await admin.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).rows[0].n);
    expect(locks).toBe(0);
  });
});

describe('the same PgBouncer without the pooler option: the failures it prevents', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let strict: Pgbouncer;
  let lenient: Pgbouncer;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    [strict, lenient] = await Promise.all([
      startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 3 }),
      // What many hosted poolers are told to do with startup parameters they do not support: drop them.
      startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 3, ignoreStartupParameters: SERVER_TIMEOUTS }),
    ]);
  }, 600_000);

  afterAll(async () => {
    await Promise.all([strict?.stop(), lenient?.stop()]);
    await scratch?.drop();
  });

  it('startup is refused: PgBouncer rejects the timeouts in the startup packet', async () => {
    const error = await startupError({ url: strict.url(), sslRootCert: h.caPem, pooler: 'none', startupRetries: 0, appEnv: 'development' });
    expect(error).toBeInstanceOf(ConnectionError);
    expect(error).toMatchObject({ sqlstate: '08P01' });
    expect(error.message).toContain('unsupported startup parameter: statement_timeout');
  });

  it('where the pooler drops them, the statement timeout silently never fires', async () => {
    const started = await startDatabaseApp({ url: lenient.url(), sslRootCert: h.caPem, pooler: 'none', statementTimeoutMs: 200 });
    try {
      const db = started.app.get(DatabaseService);
      const t0 = performance.now();
      await db.fetch('SELECT pg_sleep(0.8)'); // 4× the timeout, and it completes
      expect(performance.now() - t0).toBeGreaterThan(750);
    } finally {
      await started.close();
    }
    // With the option, on the same pooler, it fires.
    const pooled = await startDatabaseApp({ url: lenient.url(), sslRootCert: h.caPem, pooler: 'transaction', statementTimeoutMs: 200 });
    try {
      await expect(pooled.app.get(DatabaseService).fetch('SELECT pg_sleep(0.8)')).rejects.toBeInstanceOf(StatementTimeoutError);
    } finally {
      await pooled.close();
    }
  });

  it('withConnection loses its session: consecutive statements run on different server backends', async () => {
    const started = await startDatabaseApp({ url: lenient.url(), sslRootCert: h.caPem, pooler: 'none' });
    const other = await rawClient(lenient, scratch.cluster);
    try {
      const pids = await started.app.get(DatabaseService).withConnection(async (c) => {
        const first = await c.fetchval<number>('SELECT pg_backend_pid()');
        // Another client of the pooler takes the server connection this one just gave back.
        await other.query('BEGIN');
        await other.query('SELECT 1');
        const second = await c.fetchval<number>('SELECT pg_backend_pid()');
        await other.query('COMMIT');
        return [first, second];
      });
      expect(pids[0]).not.toBe(pids[1]);
    } finally {
      await other.end();
      await started.close();
    }
  });
});

describe('a pooler whose connection to the server is plaintext', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.plain);
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, serverTls: 'disable' });
  }, 600_000);

  afterAll(async () => {
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('is refused under DATABASE_SSL_MIN_MODE=verify-full, naming the leg', async () => {
    const error = await startupError({ url: bouncer.url(), sslRootCert: h.caPem, pooler: 'transaction', sslMinMode: 'verify-full', startupRetries: 0 });
    expect(error).toBeInstanceOf(SslNotActiveError);
    expect(error.message).toContain("the pooler's connection to the server is not encrypted");
  });

  it('is accepted with a warning otherwise; the client leg is still verified TLS', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    const log = jest.spyOn(Logger.prototype, 'log');
    try {
      const started = await startDatabaseApp({ url: bouncer.url(), sslRootCert: h.caPem, pooler: 'transaction' });
      await started.close();
      expect(started.db.lastTls).toMatchObject({ ssl: false, serverLeg: 'pooler-to-server', clientLeg: { encrypted: true, verified: true } });
      expect(warn.mock.calls.map((c) => String(c[0])).join('\n')).toContain('The pooler connects to the server in plaintext');
      expect(log.mock.calls.map((c) => String(c[0])).find((l) => l.startsWith('Connected to'))).toMatch(/client-to-pooler leg TLS .*pooler-to-server leg \(pg_stat_ssl\) PLAINTEXT/);
    } finally {
      warn.mockRestore();
      log.mockRestore();
    }
  });
});

describe('behind PgBouncer in session mode', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolMode: 'session' });
  }, 600_000);

  afterAll(async () => {
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('sets the timeouts per session, keeps them across the session reset, and allows session work', async () => {
    const started = await startDatabaseApp({ url: bouncer.url(), sslRootCert: h.caPem, pooler: 'session', statementTimeoutMs: 400, poolMax: 1 });
    try {
      const db = started.app.get(DatabaseService);
      expect(await db.fetchval("SELECT current_setting('statement_timeout')")).toBe('400ms');
      await db.withConnection((c) => c.execute('SET statement_timeout = 0')); // reset (DISCARD ALL) afterwards
      expect(await db.fetchval("SELECT current_setting('statement_timeout')")).toBe('400ms');
      await expect(db.fetch('SELECT pg_sleep(3)')).rejects.toBeInstanceOf(StatementTimeoutError);
    } finally {
      await started.close();
    }
  });
});
