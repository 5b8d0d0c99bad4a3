import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidInputError, type Queryable, sql } from '../../src/index.js';
import { type ServiceFixture, checkedOut, startService } from './service-fixture.js';

// Classic injection strings; each must be stored and read back exactly, and `victims` must survive.
const PAYLOADS = [
  "'",
  "''",
  "' OR '1'='1",
  "' OR 1=1 --",
  "'; DROP TABLE victims; --",
  "'); DROP TABLE victims; --",
  '"; DROP TABLE victims; --',
  '-- a comment',
  '/* a comment */',
  '*/ DROP TABLE victims; /*',
  '\\',
  "\\'",
  "\\'; DROP TABLE victims; --",
  "E'\\x27; DROP TABLE victims; --",
  '’ OR ‘1’=‘1', // typographic quotes
  'ʼ; DROP TABLE victims; --', // U+02BC modifier letter apostrophe
  '＇; DROP TABLE victims; --', // U+FF07 fullwidth apostrophe
  "U&'\\0027'; DROP TABLE victims; --",
  '$1',
  '$$; DROP TABLE victims; $$',
  '$tag$; DROP TABLE victims; $tag$',
  '1; SELECT pg_sleep(30)',
  '%s%s%n',
  "line\nbreak\r\n\ttab'",
  '\u2028\u2029',
  '😀\'; DROP TABLE victims; --',
  '',
];
const NUL_PAYLOAD = "a\0'; DROP TABLE victims; --";

type ReadBack = (q: Queryable, value: string) => Promise<unknown>;

// Every helper, with text + params and with the sql template; each writes the value and reads it back.
const ROUND_TRIPS: Record<string, ReadBack> = {
  'execute + fetchval (text)': async (q, v) => {
    expect(await q.execute('INSERT INTO payloads (v) VALUES ($1)', [v])).toBe(1);
    return q.fetchval('SELECT v FROM payloads WHERE v = $1 ORDER BY id DESC LIMIT 1', [v]);
  },
  'fetchrow (text)': async (q, v) => (await q.fetchrow<{ v: string }>('INSERT INTO payloads (v) VALUES ($1) RETURNING v', [v])).v,
  'fetchMaybeRow (text)': async (q, v) => (await q.fetchMaybeRow<{ v: string }>('SELECT $1::text AS v', [v]))?.v,
  'fetch (text)': async (q, v) => {
    const rows = await q.fetch<{ v: string }>('SELECT v FROM payloads WHERE v = $1', [v]);
    expect(rows.length).toBeGreaterThan(0);
    return rows.every((r) => r.v === v) ? v : rows;
  },
  'query (text)': async (q, v) => (await q.query<{ v: string }>('SELECT $1::text AS v', [v])).rows[0].v,
  'execute + fetchval (sql)': async (q, v) => {
    expect(await q.execute(sql`INSERT INTO payloads (v) VALUES (${v})`)).toBe(1);
    return q.fetchval(sql`SELECT v FROM payloads WHERE v = ${v} ORDER BY id DESC LIMIT 1`);
  },
  'fetchrow (sql)': async (q, v) => (await q.fetchrow<{ v: string }>(sql`INSERT INTO payloads (v) VALUES (${v}) RETURNING v`)).v,
  'fetchMaybeRow (sql)': async (q, v) => (await q.fetchMaybeRow<{ v: string }>(sql`SELECT ${v}::text AS v`))?.v,
  'fetch (sql)': async (q, v) => (await q.fetch<{ v: string }>(sql`SELECT ${v}::text AS v`))[0].v,
  'query (nested sql)': async (q, v) => {
    const where = sql`v = ${v}`;
    return (await q.query<{ v: string }>(sql`SELECT v FROM payloads WHERE ${where} AND ${1} = ${1} LIMIT ${1}`)).rows[0].v;
  },
  'sql.list': async (q, v) => q.fetchval(sql`SELECT v FROM payloads WHERE v IN (${sql.list([v, 'no such value'])}) LIMIT 1`),
  'sql.array': async (q, v) => q.fetchval(sql`SELECT v FROM payloads WHERE v = ANY(${sql.array([v, "'"], 'text')}) AND v = ${v} LIMIT 1`),
  'sql.join': async (q, v) => q.fetchval(sql`SELECT ${sql.join([sql`${v}::text`, ''], sql` || `)}`),
};

describe('injection payloads are data, never SQL', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService();
    await f.db.execute('CREATE TABLE victims (id int)');
    await f.db.execute('CREATE TABLE payloads (id serial PRIMARY KEY, v text NOT NULL)');
  });

  afterAll(async () => {
    await f?.close();
  });

  const tablesSurvive = async () => {
    expect(await f.db.fetchval("SELECT to_regclass('public.victims') IS NOT NULL")).toBe(true);
    expect(await f.db.fetchval("SELECT to_regclass('public.payloads') IS NOT NULL")).toBe(true);
  };

  const handles: Record<string, <T>(fn: (q: Queryable) => Promise<T>) => Promise<T>> = {
    service: (fn) => fn(f.db),
    transaction: (fn) => f.db.transaction(fn),
    withConnection: (fn) => f.db.withConnection(fn),
  };

  for (const [handle, using] of Object.entries(handles)) {
    for (const [name, roundTrip] of Object.entries(ROUND_TRIPS)) {
      it(`${handle}: ${name} stores and returns every payload verbatim`, async () => {
        for (const payload of PAYLOADS) {
          await expect(using((q) => roundTrip(q, payload))).resolves.toBe(payload);
        }
        await tablesSurvive();
      });
    }
  }

  it('every stored value equals a payload', async () => {
    const stored = await f.db.fetch<{ v: string }>('SELECT DISTINCT v FROM payloads');
    expect(new Set(stored.map((r) => r.v))).toEqual(new Set(PAYLOADS));
  });

  it('a NUL byte (which PostgreSQL text cannot hold) is refused with a typed error by every helper; nothing breaks', async () => {
    for (const [handle, using] of Object.entries(handles)) {
      for (const [name, roundTrip] of Object.entries(ROUND_TRIPS)) {
        const failure = await using((q) => roundTrip(q, NUL_PAYLOAD)).then(
          () => new Error(`${handle}: ${name} accepted a NUL byte`),
          (error: unknown) => error,
        );
        expect(failure).toBeInstanceOf(InvalidInputError);
        expect(failure).toMatchObject({ sqlstate: '22021' });
        expect((failure as Error).message).not.toContain('DROP');
      }
    }
    await tablesSurvive();
    expect(await f.db.fetchval('SELECT count(*)::int FROM payloads WHERE v LIKE $1', ['a%'])).toBe(0);
    expect(checkedOut(f.db)).toBe(0);
  });

  it('a payload as an identifier is quoted: the table gets exactly that name', async () => {
    for (const payload of PAYLOADS.filter((p) => p !== '')) {
      const table = sql.identifier('public', payload);
      await f.db.execute(sql`CREATE TABLE ${table} (${sql.identifier(payload)} text)`);
      await f.db.execute(sql`INSERT INTO ${table} VALUES (${payload})`);
      expect(await f.db.fetchval(sql`SELECT ${sql.identifier(payload)} FROM ${table}`)).toBe(payload);
      expect(await f.db.fetchval('SELECT count(*)::int FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2', ['public', payload])).toBe(1);
      await f.db.execute(sql`DROP TABLE ${table}`);
    }
    await tablesSurvive();
  });
});
