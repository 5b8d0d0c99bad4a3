import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { DatabaseService, StreamIdleTimeoutError, sql } from '../../src/index.js';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { startDatabaseApp } from '../support/database-app.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import { checkedOut, deferred } from './service-fixture.js';

// Small, so the tests are quick; large enough that a loaded machine still pulls well within it.
const IDLE_MS = 400;
const POOL_MAX = 2;

interface Target {
  db: DatabaseService;
  cluster: LocalPostgresCluster;
  close(): Promise<void>;
}

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };

/** The module over a scratch database of the TLS cluster, reached directly or through `bouncer`. */
async function startTarget(options: { pipelining?: boolean; bouncer?: boolean }): Promise<Target> {
  const scratch = await scratchDatabase(h.tls);
  let bouncer: Pgbouncer | undefined;
  try {
    if (options.bouncer) bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 5 });
    const app = await startDatabaseApp({
      url: bouncer ? bouncer.url() : scratch.cluster.url(),
      sslRootCert: h.caPem,
      appEnv: 'production',
      poolMax: POOL_MAX,
      acquireTimeoutMs: 3000, // far beyond the idle deadline: a wait that ends is the deadline's doing
      streamIdleTimeoutMs: IDLE_MS,
      pipelining: options.pipelining ?? false,
      ...(bouncer ? { pooler: 'transaction' as const } : {}),
    });
    const db = app.app.get(DatabaseService);
    await db.execute('CREATE TABLE marks (label text NOT NULL)');
    return {
      db,
      cluster: scratch.cluster,
      close: async () => {
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

/** Polls `condition` (every 10 ms) until it holds; the time it took. Fails after `timeoutMs`. */
async function until(condition: () => boolean | Promise<boolean>, timeoutMs = IDLE_MS + 5000): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

interface Backend {
  state: string | null;
  waitEvent: string | null;
}

describe.each<[string, { pipelining?: boolean; bouncer?: boolean }]>([
  ['direct (statement cache on, the default)', {}],
  ['pipelining on', { pipelining: true }],
  ['behind PgBouncer in transaction mode', { bouncer: true }],

])('a stream whose consumer stops pulling, %s', (_name, options) => {
  let t: Target;
  let admin: pg.Client;

  beforeAll(async () => {
    t = await startTarget(options);
    admin = await t.cluster.superuserClient(t.cluster.facts.database);
  }, 600_000); // a fresh machine installs pgbouncer first
  // A test that failed with its stream still paused must not leave the next ones without a connection.
  const opened: AsyncGenerator<unknown>[] = [];
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((rows) => rows.return(undefined).catch(() => undefined)));
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  /** The server's view of backend `pid` (behind PgBouncer: the server connection), or null once it has exited. */
  async function backend(pid: number): Promise<Backend | null> {
    const { rows } = await admin.query<Backend>('SELECT state, wait_event AS "waitEvent" FROM pg_stat_activity WHERE pid = $1', [pid]);
    return rows[0] ?? null;
  }

  /** A stream paused after its first row: the server is inside the statement, waiting for us. */
  async function stall(): Promise<{ rows: AsyncGenerator<{ pid: number }>; pid: number; pausedAt: number }> {
    const rows = t.db.stream<{ pid: number }>('SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 100000) g', [], { batchSize: 10 });
    opened.push(rows);
    const first = await rows.next();
    const pausedAt = performance.now();
    if (first.done) throw new Error('the stream ended at once');
    return { rows, pid: first.value.pid, pausedAt };
  }

  it('frees its connection within the idle deadline, and the next pull throws StreamIdleTimeoutError', async () => {
    const { rows, pid, pausedAt } = await stall();
    // What the issue saw: mid-statement, waiting for the client, where statement_timeout does not fire
    // (seen before the deadline: afterwards the backend is idle, which also waits in ClientRead).
    const waiting = async () => JSON.stringify(await backend(pid)) === JSON.stringify({ state: 'active', waitEvent: 'ClientRead' });
    await until(waiting, IDLE_MS - 100);
    await until(() => checkedOut(t.db) === 0);
    const freedAfterMs = performance.now() - pausedAt;
    expect(freedAfterMs).toBeGreaterThanOrEqual(IDLE_MS - 20); // not before the deadline
    expect(freedAfterMs).toBeLessThan(IDLE_MS + 3000);
    // On the server the statement is over and nothing is left open (no transaction, no portal).
    expect(await backend(pid)).toMatchObject({ state: 'idle' });
    const error = await rows.next().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StreamIdleTimeoutError);
    expect(error).toMatchObject({ code: 'DB_STREAM_IDLE_TIMEOUT', idleTimeoutMs: IDLE_MS });
    expect((error as Error).message).toMatch(/DATABASE_STREAM_IDLE_TIMEOUT_MS/);
    expect((error as Error).message).not.toMatch(/generate_series|SELECT/);
    expect(await rows.next()).toEqual({ done: true, value: undefined });
    expect(await t.db.fetchval('SELECT 1')).toBe(1);
    expect(t.db.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });

  it('two stalled streams hold a pool of 2; a query waiting for a connection gets one at the deadline, not DB_POOL_EXHAUSTED', async () => {
    const stalled = [await stall(), await stall()];
    expect(checkedOut(t.db)).toBe(POOL_MAX);
    const started = performance.now();
    expect(await t.db.fetchval<number>(sql`SELECT ${7}::int`)).toBe(7);
    expect(performance.now() - started).toBeLessThan(IDLE_MS + 3000);
    // The second stream's deadline comes a little later (it started later).
    await until(() => checkedOut(t.db) === 0);
    for (const { rows } of stalled) await expect(rows.next()).rejects.toBeInstanceOf(StreamIdleTimeoutError);
  });

  it('a consumer that pulls slowly but within the deadline is never cut off', async () => {
    const started = performance.now();
    let seen = 0;
    for await (const _row of t.db.stream(sql`SELECT g FROM generate_series(1, ${12}::int) g`, { batchSize: 3 })) {
      seen++;
      await sleep(IDLE_MS / 4); // the consumer's own pace
    }
    expect(seen).toBe(12);
    expect(performance.now() - started).toBeGreaterThan(2 * IDLE_MS);
    await until(() => checkedOut(t.db) === 0);
  });

  it("the stream's work is not committed: behind a transaction pooler its own transaction is rolled back", async () => {
    // A data-modifying stream, paused after its first row.
    const rows = t.db.stream<{ pid: number }>(
      sql`WITH m AS (INSERT INTO marks VALUES (${'stalled'}) RETURNING 1) SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 1000) g, m`,
      { batchSize: 10 },
    );
    opened.push(rows);
    const { pid } = (await rows.next()).value as { pid: number };
    await until(() => checkedOut(t.db) === 0);
    await expect(rows.next()).rejects.toBeInstanceOf(StreamIdleTimeoutError);
    const kept = await t.db.fetchval<number>('SELECT count(*)::int FROM marks');
    // Directly, an autocommit statement commits when its portal closes (as after `break`); behind
    // the pooler the cursor ran inside BEGIN … and the deadline rolled it back.
    expect(kept).toBe(options.bouncer ? 0 : 1);
    expect(await backend(pid)).toMatchObject({ state: 'idle' });
    await t.db.execute('DELETE FROM marks');
  });
});

describe('a stream on a transaction or withConnection handle whose consumer stops pulling', () => {
  let t: Target;
  let admin: pg.Client;

  beforeAll(async () => {
    t = await startTarget({});
    admin = await t.cluster.superuserClient(t.cluster.facts.database);
  });
  afterAll(async () => {
    await admin?.end();
    await t?.close();
  });

  const backendGone = async (pid: number) => (await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount === 0;

  it('ends the connection (the server rolls back) and the transaction can no longer commit, even if the callback carries on', async () => {
    const stalledAt = deferred<number>();
    const outcome = t.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO marks VALUES (${'half a read'})`);
      const pid = await tx.fetchval<number>('SELECT pg_backend_pid()');
      const rows = tx.stream(sql`SELECT g FROM generate_series(1, ${100000}::int) g`, { batchSize: 10 });
      await rows.next();
      stalledAt.resolve(pid);
      await until(() => backendGone(pid)); // the consumer stalls past the deadline
      return 'done'; // as if nothing happened: the COMMIT must be refused
    });
    const pid = await stalledAt.promise;
    await expect(outcome).rejects.toBeInstanceOf(StreamIdleTimeoutError);
    expect(await backendGone(pid)).toBe(true);
    expect(await t.db.fetchval<number>('SELECT count(*)::int FROM marks')).toBe(0);
    expect(checkedOut(t.db)).toBe(0);
  });

  it('withConnection: the next pull and every later query on the handle throw the same error', async () => {
    let pid = 0;
    const outcome = t.db.withConnection(async (connection) => {
      pid = await connection.fetchval<number>('SELECT pg_backend_pid()');
      const rows = connection.stream('SELECT g FROM generate_series(1, 100000) g', [], { batchSize: 10 });
      await rows.next();
      await until(() => backendGone(pid));
      await expect(rows.next()).rejects.toBeInstanceOf(StreamIdleTimeoutError);
      await expect(connection.fetchval('SELECT 1')).rejects.toBeInstanceOf(StreamIdleTimeoutError);
      return 'finished';
    });
    expect(await outcome).toBe('finished');
    expect(checkedOut(t.db)).toBe(0);
    expect(await t.db.fetchval('SELECT 1')).toBe(1);
  });
});
