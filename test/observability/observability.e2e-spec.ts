import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { type QueryEvent, PoolExhaustedError, ResultTooLargeError, UniqueViolationError, sql } from '../../src/index.js';
import { LogCapture } from '../support/log-capture.js';
import type { ServiceFixture } from '../service/service-fixture.js';
import { deferred } from '../service/service-fixture.js';
import { directTarget, transactionPoolerTarget } from '../service/transaction-targets.js';
import { MetricsProbe, type Point, total } from './metrics-probe.js';

// Bound values that must never show up in an event, a metric attribute or a log line.
const MARKER_TEXT = 'mk-7f3a9c-bound-value';
const MARKER_NUMBER = 918273645;
const MARKER_NOTE = 'note-5e1d0b-secret';
const LITERAL_MARKER = 'lit-2c8e4a-in-text';

function expectNoValues(recorded: string): void {
  for (const marker of [MARKER_TEXT, String(MARKER_NUMBER), MARKER_NOTE]) expect(recorded).not.toContain(marker);
}

/** Every attribute key and value of every point, as one string to search. */
function attributesText(points: Point[]): string {
  return JSON.stringify(points.map((p) => p.attributes));
}

/** Polls a real condition (never a fixed sleep as synchronisation). */
async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

const TABLE = 'CREATE TABLE IF NOT EXISTS obs_items (id int PRIMARY KEY, note text NOT NULL)';

describe.each([directTarget(), transactionPoolerTarget()])('observability: $name', (target) => {
  const pooled = target.name.includes('PgBouncer');
  let fixture: ServiceFixture | undefined;

  beforeAll(() => target.setUp(), 60_000);
  afterAll(() => target.tearDown());
  afterEach(async () => {
    await fixture?.close();
    fixture = undefined;
  });

  it('calls onQuery once per statement with its connection, fingerprint, rows, outcome and how it ran; never a bound value', async () => {
    const events: QueryEvent[] = [];
    // One connection: the second run of a text finds it prepared on the connection (a statement-cache hit).
    fixture = await target.start({ poolMax: 1, onQuery: (event) => events.push(event) });
    const { db } = fixture;
    await db.execute(TABLE);
    await db.execute('TRUNCATE obs_items');
    events.length = 0;

    const select = () => db.fetchrow<{ t: string }>(sql`SELECT ${MARKER_TEXT}::text AS t, ${MARKER_NUMBER}::int AS n`);
    await select();
    await select();
    expect(events).toHaveLength(2);
    expect(events[0]).toEqual({
      connection: 'default',
      text: 'SELECT $1::text AS t, $2::int AS n',
      fingerprint: expect.stringMatching(/^[0-9a-f]{16}$/),
      operation: 'SELECT',
      durationMs: expect.any(Number),
      rows: 1,
      outcome: 'ok',
      pipelined: false,
      cached: false,
      inTransaction: false,
      replica: false,
      stream: false,
    });
    // Behind a transaction pooler the module names no statement: never cached there.
    expect(events[1]).toMatchObject({ fingerprint: events[0].fingerprint, cached: !pooled });

    // Eight at once on one connection: pipelined behind each other when pipelining is on (never behind a transaction pooler).
    events.length = 0;
    await Promise.all(Array.from({ length: 8 }, (_, i) => db.fetchval(sql`SELECT ${MARKER_NUMBER + i}::int`)));
    expect(events).toHaveLength(8);
    expect(events.some((e) => e.pipelined)).toBe(!pooled);
    expect(events.filter((e) => e.pipelined).length).toBeLessThan(8); // the first one on the connection was sent alone

    events.length = 0;
    await db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO obs_items VALUES (${1}, ${MARKER_NOTE})`);
      await db.fetchval(sql`SELECT count(*) FROM obs_items WHERE note = ${MARKER_NOTE}`); // the service joins the transaction
    });
    expect(events.map((e) => [e.operation, e.rows, e.inTransaction, e.pipelined, e.cached])).toEqual([
      ['INSERT', 1, true, false, false],
      ['SELECT', 1, true, false, false],
    ]);

    events.length = 0;
    let streamed = 0;
    for await (const _row of db.stream(sql`SELECT g FROM generate_series(1, ${25}) g WHERE ${MARKER_TEXT}::text IS NOT NULL`, { batchSize: 10 })) streamed++;
    expect(streamed).toBe(25);
    expect(events).toEqual([expect.objectContaining({ stream: true, rows: 25, outcome: 'ok', inTransaction: false })]);

    events.length = 0;
    await expect(db.execute(sql`INSERT INTO obs_items VALUES (${1}, ${MARKER_NOTE})`)).rejects.toBeInstanceOf(UniqueViolationError);
    await expect(db.fetch(sql`SELECT g FROM generate_series(1, ${5}) g`, { maxRows: 2 })).rejects.toBeInstanceOf(ResultTooLargeError);
    expect(events).toEqual([
      expect.objectContaining({ operation: 'INSERT', outcome: 'error', errorCode: 'DB_UNIQUE_VIOLATION', sqlstate: '23505', rows: null }),
      expect.objectContaining({ operation: 'SELECT', outcome: 'error', errorCode: 'DB_RESULT_TOO_LARGE', rows: null }),
    ]);
    expectNoValues(JSON.stringify(events));
  });

  it('records metrics that match the pool stats and the workload, each under its pool name, with no value in any attribute', async () => {
    const probe = new MetricsProbe();
    const events: QueryEvent[] = [];
    fixture = await target.start({ poolMax: 3, acquireTimeoutMs: 400, meterProvider: probe.provider, onQuery: (event) => events.push(event) });
    const { db, databasePool } = fixture;
    try {
      await db.execute(TABLE);
      await db.execute('TRUNCATE obs_items');
      for (let i = 0; i < 10; i++) await db.fetchval(sql`SELECT ${MARKER_NUMBER}::int + ${i}`);
      await db.execute(sql`INSERT INTO obs_items VALUES (${2}, ${MARKER_NOTE})`);
      for (let i = 0; i < 2; i++) await expect(db.execute(sql`INSERT INTO obs_items VALUES (${2}, ${MARKER_NOTE})`)).rejects.toBeInstanceOf(UniqueViolationError);
      await expect(db.fetch(sql`SELECT g FROM generate_series(1, ${5}) g`, { maxRows: 2 })).rejects.toBeInstanceOf(ResultTooLargeError);

      let points = await probe.points();
      const pool = { 'db.client.connection.pool.name': 'default' };
      // 2 setup + 10 selects + 1 insert + 2 duplicates + 1 over the row cap.
      expect(total(points, 'db.client.operation.duration', pool)).toBe(16);
      expect(total(points, 'db.client.operation.duration', { ...pool, 'db.operation.name': 'SELECT', 'error.type': undefined })).toBe(10);
      expect(total(points, 'db.client.operation.duration', { 'error.type': 'DB_UNIQUE_VIOLATION', 'db.response.status_code': '23505', 'db.operation.name': 'INSERT' })).toBe(2);
      expect(points.find((p) => p.name === 'db.client.operation.duration')?.attributes).toMatchObject({
        'db.system.name': 'postgresql',
        'db.namespace': expect.any(String),
        'server.address': expect.any(String),
        'server.port': expect.any(Number),
      });
      expect(total(points, 'secure_postgres.row_cap.refusals', pool)).toBe(1);
      expect(total(points, 'secure_postgres.statement_cache.hits', pool)).toBe(events.filter((e) => e.cached).length);
      if (!pooled) expect(events.filter((e) => e.cached).length).toBeGreaterThan(0);

      const stats = databasePool.stats();
      expect(total(points, 'db.client.connection.count', { ...pool, 'db.client.connection.state': 'idle' })).toBe(stats.idle);
      expect(total(points, 'db.client.connection.count', { ...pool, 'db.client.connection.state': 'used' })).toBe(stats.total - stats.idle);
      expect(total(points, 'db.client.connection.max', pool)).toBe(3);
      expect(total(points, 'db.client.connection.pending_requests', pool)).toBe(0);
      expect(total(points, 'secure_postgres.tls.assertions', { ...pool, 'secure_postgres.tls.assertion.outcome': 'passed' })).toBe(stats.tlsAssertionsPassed);
      expect(total(points, 'secure_postgres.tls.assertions', { ...pool, 'secure_postgres.tls.assertion.outcome': 'failed' })).toBe(0);
      // Every new connection, the startup one included, was timed from the ask to its TLS assertion.
      expect(total(points, 'db.client.connection.create_time', pool)).toBe(stats.tlsAssertionsPassed);
      expect(total(points, 'db.client.connection.wait_time', pool)).toBeGreaterThanOrEqual(16);

      // All three connections held by transactions, and one more caller: it waits, then times out.
      const hold = deferred();
      const holders = Array.from({ length: 3 }, () => db.transaction(async (tx) => (await tx.fetchval(sql`SELECT 1`), hold.promise)));
      await until(() => databasePool.stats().idle === 0 && databasePool.stats().total === 3, 'three held connections');
      const waiting = db.fetchval(sql`SELECT ${MARKER_TEXT}::text`);
      await until(() => databasePool.stats().waiting === 1, 'a waiting caller');
      points = await probe.points();
      expect(total(points, 'db.client.connection.pending_requests', pool)).toBe(1);
      expect(total(points, 'db.client.connection.count', { ...pool, 'db.client.connection.state': 'used' })).toBe(3);
      await expect(waiting).rejects.toBeInstanceOf(PoolExhaustedError);
      hold.resolve();
      await Promise.all(holders);
      points = await probe.points();
      expect(total(points, 'db.client.connection.timeouts', pool)).toBe(1);
      expect(total(points, 'db.client.connection.pending_requests', pool)).toBe(0);

      expectNoValues(attributesText(points));
      expectNoValues(JSON.stringify(events));
    } finally {
      await probe.shutdown();
    }
  });

  it('a throwing onQuery never breaks a statement, a failure or a stream, and is reported once', async () => {
    const logs = new LogCapture();
    let calls = 0;
    fixture = await target.start({
      onQuery: () => {
        calls++;
        throw new Error(`hook failed ${MARKER_TEXT}`);
      },
    });
    fixture.moduleRef.useLogger(logs);
    const { db } = fixture;
    expect(await db.fetchval(sql`SELECT ${41}::int + 1`)).toBe(42);
    await expect(db.fetch(sql`SELECT g FROM generate_series(1, ${5}) g`, { maxRows: 2 })).rejects.toBeInstanceOf(ResultTooLargeError);
    const rows: unknown[] = [];
    for await (const row of db.stream(sql`SELECT g FROM generate_series(1, ${3}) g`)) rows.push(row);
    expect(rows).toHaveLength(3);
    expect(await db.transaction((tx) => tx.fetchval(sql`SELECT ${7}::int`))).toBe(7);
    expect(calls).toBe(4);
    expect(logs.lines.filter((line) => line.includes('The onQuery hook threw'))).toHaveLength(1);
    expect(logs.text()).not.toContain(MARKER_TEXT);
  });

  it('logs slow statements (a real pg_sleep burst) at most 10 times a minute, with the normalised text and no value', async () => {
    const logs = new LogCapture();
    fixture = await target.start({ poolMax: 4, slowQueryMs: 50 });
    fixture.moduleRef.useLogger(logs);
    const { db } = fixture;
    await db.fetchval(sql`SELECT ${MARKER_NUMBER}::int`); // fast: not logged
    await Promise.all(Array.from({ length: 14 }, () => db.execute(sql`SELECT pg_sleep(${0.08}), ${MARKER_TEXT}::text, ${sql.unsafeRaw(`'${LITERAL_MARKER}'`)}`)));
    const slow = logs.lines.filter((line) => line.includes('Slow query:'));
    expect(slow).toHaveLength(10);
    for (const line of slow) {
      expect(line).toMatch(/^\[warn\] Slow query: \d+ ms \(threshold 50 ms\), SELECT, 1 rows, .*fingerprint [0-9a-f]{16}: select pg_sleep \( \? \) , \? :: text , \?/);
    }
    // Production: the literal written into the text is not printed either.
    expect(logs.text()).not.toContain(LITERAL_MARKER);
    expectNoValues(logs.text());
  });
});

describe('observability: behind PgBouncer with DATABASE_DIRECT_URL', () => {
  const target = transactionPoolerTarget();
  beforeAll(() => target.setUp(), 60_000);
  afterAll(() => target.tearDown());

  it('withConnection runs on the direct pool, which reports under its own pool name', async () => {
    const probe = new MetricsProbe();
    const events: QueryEvent[] = [];
    const first = await target.start();
    const directUrl = first.cluster.url();
    await first.close();
    const fixture = await target.start({ directUrl, meterProvider: probe.provider, onQuery: (event) => events.push(event) });
    try {
      await fixture.db.fetchval(sql`SELECT ${1}::int`);
      await fixture.db.withConnection((connection) => connection.fetchval(sql`SELECT pg_advisory_lock(${MARKER_NUMBER})`));
      expect(events.map((e) => [e.connection, e.inTransaction])).toEqual([
        ['default', false],
        ['direct', false],
      ]);
      const points = await probe.points();
      expect(total(points, 'db.client.operation.duration', { 'db.client.connection.pool.name': 'default' })).toBe(1);
      expect(total(points, 'db.client.operation.duration', { 'db.client.connection.pool.name': 'direct' })).toBe(1);
      expect(total(points, 'db.client.connection.max', { 'db.client.connection.pool.name': 'direct' })).toBe(fixture.databasePool.direct!.config.pool.max);
      expectNoValues(attributesText(points) + JSON.stringify(events));
    } finally {
      await fixture.close();
      await probe.shutdown();
    }
  });
});
