import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidQueryError, ResultTooLargeError, sql } from '../../src/index.js';
import { type ServiceFixture, checkedOut, startService } from './service-fixture.js';

const MAX_ROWS = 1000;
// ~100 bytes of text per row: a million rows buffered would take well over 100 MB of heap.
const MILLION_WIDE_ROWS = sql`SELECT g, repeat('x', 100) AS filler FROM generate_series(1, 1000000) g`;

/** A buffered result is bounded while it is read: the server stops sending at the limit. */
describe('buffered queries refuse more than maxRows rows', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ maxRows: MAX_ROWS, poolMax: 1 });
  });
  afterAll(() => f?.close());

  const rows = (n: number) => sql`SELECT g FROM generate_series(1, ${n}::int) g`;

  it('up to the limit is fine; one more is a typed, sanitized ResultTooLargeError', async () => {
    expect(await f.db.fetch(rows(MAX_ROWS))).toHaveLength(MAX_ROWS);
    const error = await f.db.fetch(rows(MAX_ROWS + 1)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ResultTooLargeError);
    expect(error).toMatchObject({ code: 'DB_RESULT_TOO_LARGE', maxRows: MAX_ROWS, retryable: false });
    expect((error as Error).message).toBe(
      `The query returned more than ${MAX_ROWS} rows, the limit for a buffered result: page it, read it with stream(), or pass a higher maxRows for this call`,
    );
  });

  it('applies to every buffered helper, text or template, and inside transactions', async () => {
    const big = 'SELECT g FROM generate_series(1, $1::int) g';
    for (const call of [
      () => f.db.query(big, [MAX_ROWS + 5]),
      () => f.db.fetch(big, [MAX_ROWS + 5]),
      () => f.db.fetchrow(rows(MAX_ROWS + 5)),
      () => f.db.fetchMaybeRow(rows(MAX_ROWS + 5)),
      () => f.db.fetchval(rows(MAX_ROWS + 5)),
      () => f.db.transaction((tx) => tx.fetch(rows(MAX_ROWS + 5))),
    ]) {
      await expect(call()).rejects.toBeInstanceOf(ResultTooLargeError);
    }
  });

  it('execute keeps only the row count, so it has no limit', async () => {
    expect(await f.db.execute(rows(MAX_ROWS * 20))).toBe(MAX_ROWS * 20);
  });

  it('a call can raise or lift its own limit; nonsense limits are refused', async () => {
    expect(await f.db.fetch(rows(MAX_ROWS * 3), { maxRows: MAX_ROWS * 3 })).toHaveLength(MAX_ROWS * 3);
    expect((await f.db.query('SELECT g FROM generate_series(1, $1::int) g', [MAX_ROWS * 2], { maxRows: Infinity })).rowCount).toBe(MAX_ROWS * 2);
    await expect(f.db.fetch(rows(10), { maxRows: 5 })).rejects.toMatchObject({ maxRows: 5 });
    for (const maxRows of [0, -1, 1.5, Number.NaN]) await expect(f.db.fetch(rows(1), { maxRows })).rejects.toBeInstanceOf(InvalidQueryError);
    await expect(f.db.fetch(rows(1), [1] as never)).rejects.toThrow('carries its own values');
  });

  it.each([
    ['through the service (autocommit)', false],
    ['inside a transaction', true],
  ])("a write's RETURNING rows are not capped: the write happened, so all its rows come back (%s)", async (_, inTransaction) => {
    await f.db.execute('CREATE TABLE IF NOT EXISTS stamped (id int PRIMARY KEY)');
    await f.db.execute('TRUNCATE stamped');
    const insert = sql`INSERT INTO stamped SELECT g FROM generate_series(1, ${MAX_ROWS + 5}::int) g RETURNING id`;
    const returned = inTransaction ? await f.db.transaction((tx) => tx.fetch(insert)) : await f.db.fetch(insert);
    expect(returned).toHaveLength(MAX_ROWS + 5);
    const moved = sql`WITH d AS (DELETE FROM stamped WHERE id > 3 RETURNING id) SELECT id FROM d`;
    expect(await f.db.fetch(moved)).toHaveLength(MAX_ROWS + 2);
    expect(await f.db.fetchval('SELECT count(*)::int FROM stamped')).toBe(3);
    // A read of the same size is still refused.
    await expect(f.db.fetch(rows(MAX_ROWS + 5))).rejects.toBeInstanceOf(ResultTooLargeError);
  });

  it('a million-row query is refused before memory grows, and the connection is clean for the next caller', async () => {
    const pid = await f.db.fetchval<number>('SELECT pg_backend_pid()');
    const baseline = process.memoryUsage().heapUsed;
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 1);
    try {
      await expect(f.db.fetch(MILLION_WIDE_ROWS)).rejects.toBeInstanceOf(ResultTooLargeError);
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, process.memoryUsage().heapUsed);
    expect(peak - baseline).toBeLessThan(20 * 1024 * 1024);
    // Same backend (poolMax 1), nothing left over from the cut-off result, nothing checked out.
    expect(await f.db.fetchrow(sql`SELECT pg_backend_pid() AS pid, ${'next'}::text AS answer`)).toEqual({ pid, answer: 'next' });
    expect(checkedOut(f.db)).toBe(0);
    expect(f.db.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
  });
});

describe('DATABASE_MAX_ROWS', () => {
  it('sets the default limit from the environment twin, validated', async () => {
    const { readDatabaseEnv, resolveDatabaseConfig } = await import('../../src/index.js');
    const env = { DATABASE_URL: 'postgresql://app@db.example.com/app', DATABASE_MAX_ROWS: '250' };
    expect(resolveDatabaseConfig(readDatabaseEnv(env), {}).maxRows).toBe(250);
    expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: env.DATABASE_URL }), {}).maxRows).toBe(10_000);
    expect(() => resolveDatabaseConfig(readDatabaseEnv({ ...env, DATABASE_MAX_ROWS: '0' }), {})).toThrow(/DATABASE_MAX_ROWS \(maxRows\) must be at least 1/);
  });
});
