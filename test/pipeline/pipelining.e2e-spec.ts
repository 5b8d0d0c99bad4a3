import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
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
import { reportFigure } from '../resilience/figures.js';
import { type ServiceFixture, checkedOut, startService, waitForBackendExit } from '../service/service-fixture.js';
import { ServerGate, waitUntilBlocked } from './server-gate.js';

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
    reportFigure('pipelining: many callers', { reads: ids.length, callers: 64, poolMax: POOL_MAX, wrongAnswers: wrong.length, deepestPipeline: deepest });
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

/** Lets every callback already due run (answers already received included): flushes, does not wait for the server. */
const settledCallbacks = () => new Promise((resolve) => setImmediate(resolve));

/**
 * Statements held on the server by a lock the test holds (ServerGate): which statement is in flight on
 * which connection, and which is still running, are facts the test sets up and reads in
 * pg_stat_activity (this test's scratch database and application_name only), never timings.
 */
describe('pipelining with statements held on the server by a lock', () => {
  interface Row {
    batch: string;
    i: number;
    pid: number;
  }
  let f: ServiceFixture;
  let applicationName: string;
  const gates: ServerGate[] = [];
  const hold = async (table: string) => {
    const gate = await ServerGate.close(f.cluster, table);
    gates.push(gate);
    return gate;
  };

  beforeEach(async () => {
    applicationName = `pipeline-${randomBytes(4).toString('hex')}`;
    // The lock waits last as long as the test holds its locks: no server timeout may end them first.
    f = await startService({ poolMax: 2, pipelining: true, applicationName, statementTimeoutMs: 60_000, lockTimeoutMs: 60_000 });
    for (const table of ['gate_a', 'gate_b']) {
      await f.db.execute(`CREATE TABLE ${table} (n int)`);
      await f.db.execute(`INSERT INTO ${table} VALUES (1)`);
    }
  });
  afterEach(async () => {
    for (const gate of gates.splice(0)) await gate.release();
    await f?.close();
  });

  it('a statement never joins a connection whose head has run longer than 5 ms: fast statements are answered while the slow one still runs', async () => {
    const gateA = await hold('gate_a');
    const gateB = await hold('gate_b');
    // Connection B, the pool's other one, held by a transaction (a connection of its own, never shared)
    // whose statement waits on the lock: the pool is saturated, and A will be the only shared connection.
    const other = f.db.transaction((tx) => tx.fetchval<number>(sql`SELECT count(*)::int FROM gate_b`));
    await waitUntilBlocked(f.cluster, { applicationName, marker: 'gate_b', count: 1 });
    // Connection A: a slow statement, waiting on the lock for longer than the 5 ms head-age limit.
    const slow = f.db.fetchval<number>(sql`SELECT count(*)::int FROM gate_a`);
    const [a] = await waitUntilBlocked(f.cluster, { applicationName, marker: 'gate_a', count: 1, runningLongerThanMs: 20 });

    // Two fast statements: joining A would put them behind the slow statement, for as long as the lock is held.
    const answered: number[] = [];
    const fast = [1, 2].map((i) => f.db.fetchval<number>(sql`SELECT ${i}::int AS fast`).then((value) => (answered.push(value), value)));
    // B comes free: the fast statements, waiting for a connection, take it. A probe sent now queues behind
    // them and is answered after them, unless they sit on A behind the lock: then the probe finds B free
    // and is answered while they still wait.
    await gateB.release();
    expect(await other).toBe(1);
    const probe = await f.db.fetchval<number>(sql`SELECT ${3}::int AS probe`);
    await settledCallbacks();
    expect({ probe, fastAnsweredBeforeTheProbe: answered.sort() }).toEqual({ probe: 3, fastAnsweredBeforeTheProbe: [1, 2] });
    // ... and the slow statement is still running on A: the server still shows it waiting on the lock.
    expect(await waitUntilBlocked(f.cluster, { applicationName, marker: 'gate_a', count: 1 })).toEqual([a]);

    await gateA.release();
    expect(await slow).toBe(1);
    expect(await Promise.all(fast)).toEqual([1, 2]);
    expect(checkedOut(f.db)).toBe(0);
  });

  it('a connection lost mid-pipeline fails exactly the statements in flight on it, retryable; every other caller gets its own answer', async () => {
    const gate = await hold('gate_a');
    // Connection A: one statement, held on the lock past the head-age limit, so nothing joins it.
    const onA = [f.db.fetchrow<Row>(sql`SELECT 'a'::text AS batch, ${0}::int AS i, pg_backend_pid() AS pid FROM gate_a`)];
    const [a] = await waitUntilBlocked(f.cluster, { applicationName, marker: "'a'::text", count: 1, runningLongerThanMs: 20 });
    // Connection B: seven statements issued together: the first takes the pool's other connection, the
    // other six are pipelined behind it (its head is young). The server runs the first; it waits on the lock
    // past the head-age limit, so nothing joins B either.
    const onB = Array.from({ length: 7 }, (_, k) => f.db.fetchrow<Row>(sql`SELECT 'b'::text AS batch, ${1 + k}::int AS i, pg_backend_pid() AS pid FROM gate_a`));
    const [b] = await waitUntilBlocked(f.cluster, { applicationName, marker: "'b'::text", count: 1, runningLongerThanMs: 20 });
    expect(b.pid).not.toBe(a.pid);
    expect(f.db.stats().pipeline).toEqual({ sharedConnections: 2, pipelined: 8, depth: 7 });
    // Four more callers, not touching the lock: both heads are old, so they wait for a connection (not in flight).
    const waiting = Array.from({ length: 4 }, (_, k) => f.db.fetchrow<Row>(sql`SELECT 'c'::text AS batch, ${8 + k}::int AS i, pg_backend_pid() AS pid`));
    expect(f.db.stats().pipeline).toEqual({ sharedConnections: 2, pipelined: 8, depth: 7 });

    await f.cluster.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [b.pid]));
    const lost = await Promise.allSettled(onB);
    // The waiting callers get the replacement connection and their answers while A's statement still waits on the lock.
    const answeredMeanwhile = await Promise.allSettled(waiting);
    expect(await waitUntilBlocked(f.cluster, { applicationName, marker: "'a'::text", count: 1 })).toEqual([a]);
    await gate.release();
    const held = await Promise.allSettled(onA);
    await waitForBackendExit(f.cluster, b.pid);

    const outcome = (r: PromiseSettledResult<Row>) =>
      r.status === 'rejected'
        ? `failed: ${r.reason instanceof ConnectionError ? 'ConnectionError' : String(r.reason)}, retryable ${(r.reason as ConnectionError).retryable}`
        : `${r.value.batch}${r.value.i} on ${r.value.pid === a.pid ? 'A' : r.value.pid === b.pid ? 'the lost connection' : 'a new connection'}`;
    expect({ onA: held.map(outcome), onB: lost.map(outcome), waiting: answeredMeanwhile.map(outcome) }).toEqual({
      onA: ['a0 on A'],
      onB: Array(7).fill('failed: ConnectionError, retryable true'),
      waiting: ['c8 on a new connection', 'c9 on a new connection', 'c10 on a new connection', 'c11 on a new connection'],
    });
    expect(await f.db.fetchval<number>('SELECT pg_backend_pid()')).not.toBe(b.pid);
    expect({ checkedOut: checkedOut(f.db), pipeline: f.db.stats().pipeline }).toEqual({ checkedOut: 0, pipeline: { sharedConnections: 0, pipelined: 0, depth: 0 } });
    reportFigure('pipelining: connection lost', {
      inFlightOnLostConnection: onB.length,
      failed: lost.filter((r) => r.status === 'rejected').length,
      otherCallers: onA.length + waiting.length,
      otherCallersAnswered: [...held, ...answeredMeanwhile].filter((r) => r.status === 'fulfilled').length,
    });
  });
});

describe('the default, DATABASE_PIPELINING=reads', () => {
  it('plain reads share a busy connection; a write and a call with a signal never join it, and every caller gets its own answer', async () => {
    const applicationName = `pipeline-default-${randomBytes(4).toString('hex')}`;
    const f = await startService({ poolMax: 1, applicationName, statementTimeoutMs: 60_000, lockTimeoutMs: 60_000 });
    expect(f.db.stats().pipeline).toEqual({ sharedConnections: 0, pipelined: 0, depth: 0 }); // on with no option set
    await f.db.execute('CREATE TABLE gate (n int)');
    await f.db.execute('INSERT INTO gate VALUES (1)');
    const gate = await ServerGate.close(f.cluster, 'gate');
    try {
      // Four reads together on a pool of one: the first takes the connection, the other three join it;
      // the server runs the first, which waits on the lock, so all four stay in flight.
      const reads = together(Array.from({ length: 4 }, (_, i) => () => f.db.fetchval<number>(sql`SELECT ${i}::int FROM gate`)));
      await waitUntilBlocked(f.cluster, { applicationName, marker: 'FROM gate', count: 1 });
      expect(f.db.stats().pipeline).toEqual({ sharedConnections: 1, pipelined: 4, depth: 4 });
      // A write, and a read with a signal (its abort must be able to cancel it on the server): they wait for the connection.
      const controller = new AbortController();
      const others = together<number>([
        () => f.db.execute(sql`INSERT INTO gate VALUES (${7})`),
        () => f.db.fetchval<number>(sql`SELECT ${9}::int AS nine`, { signal: controller.signal }),
      ]);
      expect(f.db.stats().pipeline).toEqual({ sharedConnections: 1, pipelined: 4, depth: 4 });
      await gate.release();
      expect((await reads).map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([0, 1, 2, 3]);
      expect((await others).map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([1, 9]);
    } finally {
      await gate.release();
      await f.close();
    }
  });
});

describe('pipelining and health', () => {
  it('readiness reports the pipeline depth: the statements in flight on the shared connection', async () => {
    const applicationName = `pipeline-health-${randomBytes(4).toString('hex')}`;
    const f = await startService({ poolMax: 1, pipelining: true });
    await f.db.execute('CREATE TABLE gate (n int)');
    await f.db.execute('INSERT INTO gate VALUES (1)');
    const moduleRef = await Test.createTestingModule({
      imports: [
        TerminusModule,
        SecureDatabaseModule.forRoot({ url: f.cluster.url(), sslRootCert: f.h.caPem, poolMax: 1, pipelining: true, applicationName, statementTimeoutMs: 60_000, lockTimeoutMs: 60_000 }),
      ],
      providers: [DatabaseHealthIndicator],
    }).compile();
    await moduleRef.init();
    const gate = await ServerGate.close(f.cluster, 'gate');
    try {
      const db = moduleRef.get(DatabaseService);
      const health = moduleRef.get(DatabaseHealthIndicator);
      // Five statements issued together on a pool of one: the first takes the connection, the other four
      // join it; the server runs the first, which waits on the lock, so all five stay in flight.
      const running = together(Array.from({ length: 5 }, (_, i) => () => db.fetchval<number>(sql`SELECT ${i}::int FROM gate`)));
      await waitUntilBlocked(f.cluster, { applicationName, marker: 'FROM gate', count: 1 });
      // The ping cannot get the connection (it is the only one, and held): read the counters from its 'down' answer.
      const answer = await health.pingCheck('database', { timeoutMs: 200 });
      expect(answer.database).toMatchObject({ status: 'down', pool: { total: 1, pipelineDepth: 5 } });
      await gate.release();
      expect((await running).map((r) => (r.status === 'fulfilled' ? r.value : 'failed'))).toEqual([0, 1, 2, 3, 4]);
      expect(await health.pingCheck('database')).toMatchObject({ database: { status: 'up', pool: { pipelineDepth: 0 } } });
    } finally {
      await gate.release();
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
