import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import {
  ConnectionError,
  DatabaseHealthIndicator,
  DatabaseService,
  InvalidInputError,
  SecureDatabaseModule,
  StatementTimeoutError,
  UniqueViolationError,
  sql,
} from '../../src/index.js';
import { type ServiceFixture, checkedOut, startService, waitForBackendExit } from '../service/service-fixture.js';

const POOL_MAX = 2;

/** Runs `calls` all in the same tick (so they meet a saturated pool together) and settles each. */
function together<T>(calls: Array<() => Promise<T>>): Promise<PromiseSettledResult<T>[]> {
  return Promise.allSettled(calls.map((call) => call()));
}

describe('pipelining: autocommit statements share busy connections, every guarantee kept', () => {
  let f: ServiceFixture;
  let deepest = 0;
  let sampler: NodeJS.Timeout;

  beforeAll(async () => {
    f = await startService({ poolMax: POOL_MAX, pipelining: true, statementTimeoutMs: 500 });
    await f.db.execute('CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL UNIQUE)');
    await f.db.execute(sql`INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 1000) g`);
    sampler = setInterval(() => (deepest = Math.max(deepest, f.db.stats().pipeline?.depth ?? 0)), 1);
  });
  afterAll(async () => {
    clearInterval(sampler);
    await f?.close();
  });

  it('many callers over two connections: statements are pipelined, every row goes to its own caller', async () => {
    const ids = Array.from({ length: 20_000 }, () => 1 + Math.floor(Math.random() * 1000));
    const before = f.db.stats();
    let next = 0;
    const wrong: number[] = [];
    await Promise.all(
      Array.from({ length: 64 }, async () => {
        while (next < ids.length) {
          const id = ids[next++];
          const row = await f.db.fetchrow<{ id: number; label: string }>(sql`SELECT id, label FROM items WHERE id = ${id}`);
          if (row.id !== id || row.label !== `item-${id}`) wrong.push(id);
        }
      }),
    );
    expect(wrong).toEqual([]);
    expect(deepest).toBeGreaterThan(1); // they did share connections
    const after = f.db.stats();
    expect(after.total).toBeLessThanOrEqual(POOL_MAX);
    // Every physical connection, pipelined or not, came through the pool and its TLS assertion.
    expect(after.tlsAssertionsPassed - before.tlsAssertionsPassed).toBe(Math.max(0, after.total - before.total));
    expect(after.tlsAssertionsFailed).toBe(0);
    expect({ checkedOut: checkedOut(f.db), inFlight: after.inFlight, pipeline: after.pipeline }).toEqual({
      checkedOut: 0,
      inFlight: 0,
      pipeline: { sharedConnections: 0, pipelined: 0, depth: 0 },
    });
  });

  it('an error in one pipelined statement fails that statement alone, typed and sanitized as without pipelining', async () => {
    const results = await together([
      () => f.db.fetchval(sql`SELECT label FROM items WHERE id = ${1}`),
      () => f.db.execute(sql`INSERT INTO items VALUES (${2000}, ${'item-1'})`), // 23505
      () => f.db.fetchval(sql`SELECT label FROM items WHERE id = ${2}`),
      () => f.db.fetchval(sql`SELECT ${'not-a-number'}::int`), // 22P02
      () => f.db.fetchval(sql`SELECT label FROM items WHERE id = ${3}`),
      () => f.db.fetchval('SELECT pg_sleep(2)'), // 57014 after 500 ms
      () => f.db.fetchval(sql`SELECT label FROM items WHERE id = ${4}`),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).constructor))).toEqual([
      'item-1',
      UniqueViolationError,
      'item-2',
      InvalidInputError,
      'item-3',
      StatementTimeoutError,
      'item-4',
    ]);
    const messages = results.filter((r) => r.status === 'rejected').map((r) => (r.reason as Error).message);
    expect(messages.join('\n')).not.toMatch(/items_label_key|not-a-number|pg_sleep/);
    expect(await f.db.fetchval('SHOW statement_timeout')).toBe('500ms');
  });

  it('a connection lost mid-pipeline fails exactly the statements in flight on it, retryable; it is replaced', async () => {
    // Fill one connection's pipeline: all sent in one tick, so each joins before the head is old.
    // 0.1 s each, well inside the 500 ms statement timeout even on a loaded machine.
    const calls = Array.from({ length: 24 }, (_, i) => () => f.db.fetchrow<{ pid: number; i: number }>(sql`SELECT pg_backend_pid() AS pid, ${i}::int AS i, pg_sleep(0.1)`));
    const running = together(calls);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pids = await f.cluster.withSuperuser(async (admin) =>
      (await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.1)%' AND pid <> pg_backend_pid()")).rows.map((r) => r.pid),
    );
    const victim = pids[0];
    await f.cluster.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [victim]));
    const results = await running;
    await waitForBackendExit(f.cluster, victim);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason as Error);
    expect(failed.length).toBeGreaterThan(0);
    for (const error of failed) {
      expect(error).toBeInstanceOf(ConnectionError);
      expect((error as ConnectionError).retryable).toBe(true);
    }
    // Every answer is its own caller's (statements done on the victim before the kill are answers too).
    results.forEach((r, i) => r.status === 'fulfilled' && expect(r.value.i).toBe(i));
    expect(await f.db.fetchval<number>('SELECT pg_backend_pid()')).not.toBe(victim);
    expect(checkedOut(f.db)).toBe(0);
  });

  it('session statements never share a connection and are still reset', async () => {
    const results = await together<unknown>([
      () => f.db.execute('SET statement_timeout = 0'),
      ...Array.from({ length: 10 }, () => () => f.db.fetchval<string>('SHOW statement_timeout')),
    ]);
    // No pipelined neighbour ever ran under the SET.
    expect(results.slice(1).map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual(Array(10).fill('500ms'));
    expect(await f.db.fetchval('SHOW statement_timeout')).toBe('500ms');
  });
});

describe('pipelining and health', () => {
  it('readiness reports the pipeline depth while statements share connections', async () => {
    const f = await startService({ poolMax: 1, pipelining: true });
    const moduleRef = await Test.createTestingModule({
      imports: [TerminusModule, SecureDatabaseModule.forRoot({ url: f.cluster.url(), sslRootCert: f.h.caPem, poolMax: 1, pipelining: true })],
      providers: [DatabaseHealthIndicator],
    }).compile();
    await moduleRef.init();
    try {
      const db = moduleRef.get(DatabaseService);
      const health = moduleRef.get(DatabaseHealthIndicator);
      const running = together(Array.from({ length: 8 }, () => () => db.fetchval('SELECT pg_sleep(0.3)')));
      await new Promise((resolve) => setTimeout(resolve, 100));
      // The ping waits for the shared connection (every slot is busy), so read the counters from a short ping's answer.
      const answer = await health.pingCheck('database', { timeoutMs: 50 });
      // Statements are in flight on the one shared connection (how many share it depends on scheduling: the first test proves depth > 1).
      expect(answer.database).toMatchObject({ status: 'down', pool: { total: 1, pipelineDepth: expect.any(Number) } });
      expect((answer.database as unknown as { pool: { pipelineDepth: number } }).pool.pipelineDepth).toBeGreaterThanOrEqual(1);
      await running;
      expect(await health.pingCheck('database')).toMatchObject({ database: { status: 'up', pool: { pipelineDepth: 0 } } });
    } finally {
      await moduleRef.close();
      await f.close();
    }
  });
});

describe('pipelining and shutdown', () => {
  it('the drain waits for pipelined statements, then refuses new ones; nothing is left on the server', async () => {
    const f = await startService({ poolMax: 1, pipelining: true });
    try {
      const running = together(Array.from({ length: 10 }, (_, i) => () => f.db.fetchval<number>(sql`SELECT ${i}::int FROM pg_sleep(0.1)`)));
      await new Promise((resolve) => setTimeout(resolve, 20));
      const closing = f.databasePool.close();
      const results = await running;
      await closing;
      expect(results.map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await expect(f.db.fetchval('SELECT 1')).rejects.toMatchObject({ code: 'DB_SHUTTING_DOWN' });
      expect(f.db.pool.totalCount).toBe(0);
    } finally {
      await f.close();
    }
  });
});
