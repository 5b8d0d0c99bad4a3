import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type Socket, createConnection, createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { ConfigurationError, DatabaseService, InvalidQueryError, QueryCancelledError, StatementTimeoutError, sql } from '../../src/index.js';
import { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';
import { TcpFaultProxy, throughProxy } from '../support/tcp-fault-proxy.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import { deferred } from './service-fixture.js';

type Setup = { pipelining?: boolean; bouncer?: boolean };

interface Target {
  db: DatabaseService;
  cluster: LocalPostgresCluster;
  admin: pg.Client;
  /** statement_timeout as a plain client (no module, no SET LOCAL) sees it on the server connection the module used. */
  serverSessionTimeout(): Promise<string>;
  close(): Promise<void>;
}

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };
const MODULE_STATEMENT_TIMEOUT_MS = 20_000;

/** The module over a scratch database of the TLS cluster, directly or through PgBouncer (transaction mode). */
async function startTarget(setup: Setup, poolMax = 1): Promise<Target> {
  const scratch = await scratchDatabase(h.tls);
  let bouncer: Pgbouncer | undefined;
  try {
    // One server connection behind PgBouncer: whatever the module's statements left on it, a plain client sees next.
    if (setup.bouncer) bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 1 });
    const app = await startDatabaseApp({
      url: bouncer ? bouncer.url() : scratch.cluster.url(),
      sslRootCert: h.caPem,
      appEnv: 'production',
      poolMax,
      acquireTimeoutMs: 10_000,
      statementTimeoutMs: MODULE_STATEMENT_TIMEOUT_MS,
      pipelining: setup.pipelining ?? false,
      // withConnection behind the pooler runs on the direct URL, as the module requires there.
      ...(bouncer ? { pooler: 'transaction' as const, directUrl: scratch.cluster.url() } : {}),
    });
    const db = app.app.get(DatabaseService);
    await db.execute('CREATE TABLE marks (label text NOT NULL)');
    const admin = await scratch.cluster.superuserClient(scratch.cluster.facts.database);
    return {
      db,
      cluster: scratch.cluster,
      admin,
      serverSessionTimeout: async () => {
        const url = bouncer ? bouncer.url() : scratch.cluster.url();
        const client = new pg.Client({ connectionString: url.replace(/\?.*$/, ''), ssl: { ca: h.caPem } });
        await client.connect();
        try {
          return (await client.query<{ statement_timeout: string }>('SHOW statement_timeout')).rows[0].statement_timeout;
        } finally {
          await client.end();
        }
      },
      close: async () => {
        await admin.end();
        await app.close();
        await bouncer?.stop();
        await scratch.drop();
      },
    };
  } catch (error) {
    await bouncer?.stop();
    await scratch.drop();
    throw error;
  }
}

/** Polls `condition` every 10 ms until it holds; fails after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs = 5_000): Promise<void> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** Server backends (of this scratch database) running a statement whose text contains `tag` (in the SQL text, not a parameter). */
async function running(admin: pg.Client, tag: string): Promise<number[]> {
  const { rows } = await admin.query<{ pid: number }>(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0",
    [tag],
  );
  return rows.map((row) => row.pid);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => new Error('expected a rejection'),
    (error: unknown) => error,
  );
}

describe.each<[string, Setup]>([
  ['directly (statement cache on, the default)', {}],
  ['with pipelining on', { pipelining: true }],
  ['behind PgBouncer in transaction mode', { bouncer: true }],
])('cancellation and per-call timeouts, %s', (_name, setup) => {
  let t: Target;

  beforeAll(async () => {
    t = await startTarget(setup);
  }, 600_000); // a fresh machine installs pgbouncer first
  afterAll(async () => {
    await t?.close();
  });

  it(
    setup.pipelining
      ? 'a pipelined statement aborted while it runs: the caller is rejected at once, the statement is NOT cancelled on the server (it shares its connection)'
      : 'pg_sleep(30) aborted while it runs: rejects in well under a second, is gone from the server, the pool keeps its connection and the next query works',
    async () => {
      const pidBefore = await t.db.fetchval<number>('SELECT pg_backend_pid()');
      const totalBefore = t.db.pool.totalCount;
      const tag = `cancel-running-${Math.random()}`;
      const controller = new AbortController();
      const seconds = setup.pipelining ? 1.5 : 30;
      const outcome = rejection(t.db.fetchval(`SELECT pg_sleep(${seconds}), '${tag}'`, [], { signal: controller.signal }));
      await until(async () => (await running(t.admin, tag)).length === 1);
      const [serverPid] = await running(t.admin, tag);
      const abortedAt = performance.now();
      controller.abort();
      const error = await outcome;
      const rejectedAfterMs = performance.now() - abortedAt;
      expect(error).toBeInstanceOf(QueryCancelledError);
      expect(error).toMatchObject({ code: 'DB_QUERY_CANCELLED' });
      expect((error as Error).message).not.toMatch(/pg_sleep|cancel-running/);
      expect(rejectedAfterMs).toBeLessThan(800);
      if (setup.pipelining) {
        // Still running: a cancel could have hit another caller's statement pipelined on that connection.
        expect(await running(t.admin, tag)).toEqual([serverPid]);
        await until(async () => (await running(t.admin, tag)).length === 0);
      } else {
        // Gone from the server at once: it was cancelled, not left to finish.
        await until(async () => (await running(t.admin, tag)).length === 0, 1_000);
      }
      expect(await t.db.fetchval<number>('SELECT pg_backend_pid()')).toEqual(setup.bouncer ? expect.any(Number) : pidBefore);
      expect(t.db.pool.totalCount).toBe(totalBefore);
      expect(await t.db.fetchval(sql`SELECT ${'fine'}::text`)).toBe('fine');
      expect(t.db.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
    },
  );

  it('a signal already aborted: rejects at once, sends nothing, takes no connection', async () => {
    const signal = AbortSignal.abort();
    const inFlight = t.db.stats().inFlight;
    const calls = [
      t.db.execute(sql`INSERT INTO marks VALUES (${'already'})`, { signal }),
      t.db.query('INSERT INTO marks VALUES ($1)', ['already'], { signal }),
      t.db.transaction((tx) => tx.execute(sql`INSERT INTO marks VALUES (${'already'})`), { signal }),
      ...(setup.bouncer ? [] : [t.db.withConnection((c) => c.execute(sql`INSERT INTO marks VALUES (${'already'})`), { signal })]),
    ];
    expect(t.db.stats().inFlight).toBe(inFlight); // no acquire started
    for (const call of calls) expect(await rejection(call)).toBeInstanceOf(QueryCancelledError);
    expect(() => t.db.stream('SELECT 1', [], { signal })).toThrow(QueryCancelledError);
    expect(await t.db.fetchval('SELECT count(*)::int FROM marks')).toBe(0);
  });

  it('aborted while waiting for a connection (pool of 1 held): rejects at once, and the connection it gets later goes straight back, nothing sent', async () => {
    const held = deferred();
    const holding = t.db.transaction(async (tx) => {
      await tx.fetchval('SELECT 1');
      await held.promise;
    });
    await until(() => t.db.stats().inFlight === 1 && t.db.pool.idleCount === 0);
    const controller = new AbortController();
    const queued = rejection(t.db.execute(sql`INSERT INTO marks VALUES (${'queued'})`, { signal: controller.signal }));
    await until(() => t.db.stats().waiting === 1);
    const abortedAt = performance.now();
    controller.abort();
    expect(await queued).toBeInstanceOf(QueryCancelledError);
    expect(performance.now() - abortedAt).toBeLessThan(100);
    held.resolve();
    await holding;
    await until(() => t.db.stats().inFlight === 0 && t.db.stats().waiting === 0);
    expect(await t.db.fetchval('SELECT count(*)::int FROM marks')).toBe(0);
  });

  it('timeoutMs: statement_timeout for that statement only, never the next one on the connection', async () => {
    const started = performance.now();
    const error = await rejection(t.db.fetchval('SELECT pg_sleep(5)', [], { timeoutMs: 150 }));
    expect(error).toBeInstanceOf(StatementTimeoutError);
    expect(error).toMatchObject({ code: 'DB_STATEMENT_TIMEOUT' });
    expect(performance.now() - started).toBeLessThan(2_000);
    // Seen by the statement itself; the same text (statement cache) without it sees the module's.
    const show = "SELECT pg_catalog.current_setting('statement_timeout')";
    expect(await t.db.fetchval(show, [], { timeoutMs: 1234 })).toBe('1234ms');
    expect(await t.db.fetchval(show)).toBe(`${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`);
    expect(await t.db.fetchval(show, [], { timeoutMs: 1234 })).toBe('1234ms');
    // Concurrent callers (pipelined together when pipelining is on): each sees its own.
    const mixed = await Promise.all(Array.from({ length: 12 }, (_, i) => t.db.fetchval(show, [], i % 2 ? { timeoutMs: 1000 + i } : undefined)));
    expect(mixed).toEqual(Array.from({ length: 12 }, (_, i) => (i % 2 ? `${1000 + i}ms` : `${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`)));
    expect(await t.db.fetchval(show)).toBe(`${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`);
    // Behind PgBouncer the module's own SET LOCAL would mask a leak: a plain client on the same server connection must see none.
    if (setup.bouncer) {
      await t.db.fetchval(show, [], { timeoutMs: 1234 });
      expect(await t.serverSessionTimeout()).not.toBe('1234ms');
    }
  });

  it('timeoutMs on a stream: its statement only (in a transaction of its own), and the session state a stream leaves is still reset', async () => {
    const show = "SELECT pg_catalog.current_setting('statement_timeout') AS t";
    const seen: unknown[] = [];
    for await (const row of t.db.stream(show, [], { timeoutMs: 3456 })) seen.push(row);
    expect(seen).toEqual([{ t: '3456ms' }]);
    expect(await t.db.fetchval(show)).toBe(`${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`);
    const error = await rejection((async () => {
      for await (const _row of t.db.stream('SELECT pg_sleep(5)', [], { timeoutMs: 150 })) void _row;
    })());
    expect(error).toBeInstanceOf(StatementTimeoutError);
    if (!setup.bouncer) {
      // A temporary table made by a stream (session state) is gone before the connection is reused.
      for await (const _row of t.db.stream('CREATE TEMP TABLE streamed_tmp AS SELECT 1 AS x', [], { timeoutMs: 1000 })) void _row;
      expect(await t.db.fetchval("SELECT count(*)::int FROM pg_catalog.pg_class WHERE relname = 'streamed_tmp'")).toBe(0);
    }
  });

  it('timeoutMs on a transaction: each of its statements, and nothing after it', async () => {
    const show = "SELECT pg_catalog.current_setting('statement_timeout')";
    const seen = await t.db.transaction(async (tx) => [await tx.fetchval(show), await tx.fetchval(show)], { timeoutMs: 4321 });
    expect(seen).toEqual(['4321ms', '4321ms']);
    expect(await t.db.fetchval(show)).toBe(`${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`);
    const error = await rejection(t.db.transaction((tx) => tx.fetchval('SELECT pg_sleep(5)'), { timeoutMs: 150 }));
    expect(error).toBeInstanceOf(StatementTimeoutError);
  });

  it('a transaction aborted midway: its statement is cancelled, the handle refuses more, and it rolls back although the callback swallowed the error', async () => {
    const tag = `cancel-tx-${Math.random()}`;
    const controller = new AbortController();
    const inside: unknown[] = [];
    const outcome = rejection(
      t.db.transaction(
        async (tx) => {
          await tx.execute(sql`INSERT INTO marks VALUES (${'in the aborted transaction'})`);
          inside.push(await rejection(tx.fetchval(`SELECT pg_sleep(30), '${tag}'`)));
          inside.push(await rejection(tx.fetchval('SELECT 1')));
          return 'swallowed';
        },
        { signal: controller.signal },
      ),
    );
    await until(async () => (await running(t.admin, tag)).length === 1);
    const abortedAt = performance.now();
    controller.abort();
    expect(await outcome).toBeInstanceOf(QueryCancelledError);
    expect(performance.now() - abortedAt).toBeLessThan(800);
    expect(inside[0]).toBeInstanceOf(QueryCancelledError);
    expect(inside[1]).toBeInstanceOf(QueryCancelledError);
    expect(await running(t.admin, tag)).toEqual([]);
    expect(await t.db.fetchval('SELECT count(*)::int FROM marks')).toBe(0);
    expect(t.db.stats()).toMatchObject({ inFlight: 0 });
  });

  it('a transaction aborted between two statements: the next one is refused, and it rolls back although the callback carried on and returned', async () => {
    const controller = new AbortController();
    const wrote = deferred();
    const resume = deferred();
    let refused: unknown;
    const outcome = rejection(
      t.db.transaction(
        async (tx) => {
          await tx.execute(sql`INSERT INTO marks VALUES (${'before the abort'})`);
          wrote.resolve();
          await resume.promise; // the callback awaits something else (an HTTP call …) when the abort comes
          refused = await rejection(tx.execute(sql`INSERT INTO marks VALUES (${'after the abort'})`));
          return 'carried on';
        },
        { signal: controller.signal },
      ),
    );
    await wrote.promise;
    controller.abort();
    resume.resolve();
    expect(await outcome).toBeInstanceOf(QueryCancelledError);
    expect(refused).toBeInstanceOf(QueryCancelledError);
    expect(await t.db.fetchval('SELECT count(*)::int FROM marks')).toBe(0);
  });

  // Behind a transaction pooler withConnection needs DATABASE_DIRECT_URL (covered by the pooler specs).
  it('withConnection: its signal cancels the running statement and the handle refuses more; timeoutMs holds for the session and is gone after release', async () => {
    const show = "SELECT pg_catalog.current_setting('statement_timeout')";
    expect(await t.db.withConnection(async (c) => [await c.fetchval(show), await c.fetchval(show)], { timeoutMs: 2345 })).toEqual(['2345ms', '2345ms']);
    expect(await t.db.fetchval(show)).toBe(`${MODULE_STATEMENT_TIMEOUT_MS / 1000}s`);
    const tag = `cancel-session-${Math.random()}`;
    const controller = new AbortController();
    let after: unknown;
    const outcome = rejection(
      t.db.withConnection(
        async (c) => {
          const error = await rejection(c.fetchval(`SELECT pg_sleep(30), '${tag}'`));
          after = await rejection(c.fetchval('SELECT 1'));
          throw error;
        },
        { signal: controller.signal },
      ),
    );
    await until(async () => (await running(t.admin, tag)).length === 1);
    controller.abort();
    expect(await outcome).toBeInstanceOf(QueryCancelledError);
    expect(after).toBeInstanceOf(QueryCancelledError);
    expect(await running(t.admin, tag)).toEqual([]);
    expect(await t.db.fetchval('SELECT 6')).toBe(6);
  });

  it('a stream aborted while its consumer holds a row: the cursor is closed, the connection freed, the next pull rejects', async () => {
    const controller = new AbortController();
    const rows = t.db.stream(sql`SELECT g FROM generate_series(1, ${100000}::int) g`, { batchSize: 10, signal: controller.signal });
    expect((await rows.next()).value).toEqual({ g: 1 });
    controller.abort();
    await until(() => t.db.pool.idleCount === t.db.pool.totalCount);
    expect(await rejection(rows.next())).toBeInstanceOf(QueryCancelledError);
    expect(await t.db.fetchval('SELECT 2')).toBe(2);
  });

  it('a stream aborted while a batch is read: the statement is cancelled on the server', async () => {
    const tag = `cancel-stream-${Math.random()}`;
    const controller = new AbortController();
    const rows = t.db.stream(`SELECT pg_sleep(30), '${tag}'`, [], { signal: controller.signal });
    const next = rejection(rows.next());
    await until(async () => (await running(t.admin, tag)).length === 1);
    controller.abort();
    expect(await next).toBeInstanceOf(QueryCancelledError);
    await until(async () => (await running(t.admin, tag)).length === 0, 1_000);
    await until(() => t.db.pool.idleCount === t.db.pool.totalCount);
    expect(await t.db.fetchval('SELECT 3')).toBe(3);
  });

  it('bad options are a clear InvalidQueryError, before anything is sent', async () => {
    for (const timeoutMs of [0, -1, 1.5, '100', Number.NaN, 2 ** 31]) {
      const error = await rejection(t.db.fetchval('SELECT 1', [], { timeoutMs } as never));
      expect(error).toBeInstanceOf(InvalidQueryError);
      expect((error as Error).message).toMatch(/timeoutMs must be a whole number/);
    }
    expect(await rejection(t.db.fetchval('SELECT 1', [], { signal: {} } as never))).toMatchObject({ message: 'signal must be an AbortSignal' });
    expect(await rejection(t.db.transaction(async () => 1, { timeoutMs: 0 }))).toBeInstanceOf(InvalidQueryError);
    const inTx = await rejection(t.db.transaction((tx) => tx.fetchval('SELECT 1', [], { timeoutMs: 100 })));
    expect(inTx).toBeInstanceOf(InvalidQueryError);
    expect((inTx as Error).message).toMatch(/transaction\(fn, \{ timeoutMs \}\)/);
  });
});

/** A loopback TCP forwarder that keeps the first 8 bytes each client sent on each connection. */
async function recordingForwarder(target: { host: string; port: number }) {
  const openings: Buffer[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const index = openings.push(Buffer.alloc(0)) - 1;
    const upstream = createConnection(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => undefined);
      socket.on('close', () => sockets.delete(socket));
    }
    client.on('data', (chunk: Buffer) => {
      if (openings[index].length < 8) openings[index] = Buffer.concat([openings[index], chunk]).subarray(0, 8);
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as { port: number }).port,
    openings,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

// The first bytes of a startup-phase message: length, then the request code.
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
const PLAINTEXT_CANCEL_REQUEST = Buffer.from([0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e]);

describe('the cancel request travels over TLS, as every other connection does', () => {
  it.each<[string, Record<string, string>]>([
    ['sslnegotiation=postgres (the default): the connection that carries it opens with an SSLRequest', {}],
    ['sslnegotiation=direct: the connection that carries it opens with a TLS handshake, as the pooled ones do', { sslnegotiation: 'direct' }],
  ])('%s, never a plaintext CancelRequest (the secret key stays encrypted)', async (name, params) => {
    const scratch = await scratchDatabase(h.tls);
    const forwarder = await recordingForwarder(scratch.cluster.facts);
    const viaForwarder = new LocalPostgresCluster({ ...scratch.cluster.facts, host: '127.0.0.1', port: forwarder.port });
    if (params.sslnegotiation === 'direct' && h.binaries.major < 17) {
      // Direct TLS needs PostgreSQL 17: before it the module refuses at startup, saying so (url-tls-parameters.e2e-spec).
      try {
        const refused = await startupError({ url: viaForwarder.url(params), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1, startupRetries: 0 });
        expect(refused).toBeInstanceOf(ConfigurationError);
        expect(refused.message).toContain('sslnegotiation=direct needs PostgreSQL 17');
      } finally {
        await forwarder.close();
        await scratch.drop();
      }
      return;
    }
    const app = await startDatabaseApp({ url: viaForwarder.url(params), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1 });
    const admin = await scratch.cluster.superuserClient(scratch.cluster.facts.database);
    try {
      const db = app.app.get(DatabaseService);
      await db.fetchval('SELECT 1');
      const before = forwarder.openings.length;
      const tag = `cancel-tls-${Math.random()}`;
      const controller = new AbortController();
      const outcome = rejection(db.fetchval(`SELECT pg_sleep(30), '${tag}'`, [], { signal: controller.signal }));
      await until(async () => (await running(admin, tag)).length === 1);
      controller.abort();
      expect(await outcome).toBeInstanceOf(QueryCancelledError);
      await until(async () => (await running(admin, tag)).length === 0, 1_000);
      // Exactly one new connection, the cancel's: TLS first, negotiated as the pooled connections were.
      const cancelConnections = forwarder.openings.slice(before);
      expect(cancelConnections).toHaveLength(1);
      if (params.sslnegotiation === 'direct') expect(cancelConnections[0][0]).toBe(0x16); // a TLS handshake record
      else expect(cancelConnections[0]).toEqual(SSL_REQUEST);
      expect(cancelConnections[0][0]).toBe(forwarder.openings[0][0]); // the same opening as the pool's first connection
      expect(forwarder.openings.some((opening) => opening.equals(PLAINTEXT_CANCEL_REQUEST))).toBe(false);
      expect(await db.fetchval('SELECT 4')).toBe(4);
    } finally {
      await admin.end();
      await app.close();
      await forwarder.close();
      await scratch.drop();
    }
  });
});

describe('a cancel request that cannot be sent', () => {
  it('destroys the connection instead of handing it out mid-cancel: the call still rejects, the pool opens a fresh one', async () => {
    const scratch = await scratchDatabase(h.tls);
    const proxy = await TcpFaultProxy.start({ host: scratch.cluster.facts.host, port: scratch.cluster.facts.port });
    const app = await startDatabaseApp({ url: throughProxy(scratch.cluster, proxy).url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1, connectTimeoutMs: 1_000 });
    const admin = await scratch.cluster.superuserClient(scratch.cluster.facts.database);
    try {
      const db = app.app.get(DatabaseService);
      const pidBefore = await db.fetchval<number>('SELECT pg_backend_pid()');
      const tag = `cancel-refused-${Math.random()}`;
      const controller = new AbortController();
      const outcome = rejection(db.fetchval(`SELECT pg_sleep(30), '${tag}'`, [], { signal: controller.signal }));
      await until(async () => (await running(admin, tag)).length === 1);
      await proxy.refuse(); // the open connection keeps forwarding; the cancel's cannot connect
      const abortedAt = performance.now();
      controller.abort();
      expect(await outcome).toBeInstanceOf(QueryCancelledError);
      expect(performance.now() - abortedAt).toBeLessThan(1_500); // within the connect timeout
      await until(() => db.pool.totalCount === 0); // destroyed, not returned
      await proxy.pass();
      expect(await db.fetchval<number>('SELECT pg_backend_pid()')).not.toBe(pidBefore);
    } finally {
      await admin.end();
      await app.close();
      await proxy.close();
      await scratch.drop();
    }
  });
});
