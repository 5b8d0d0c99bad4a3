import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { ConnectionError, InvalidQueryError, NotFoundError, QueryError, TooManyRowsError, sql } from '../../src/index.js';
import type { ScopedConnection } from '../../src/index.js';
import { type ServiceFixture, checkedOut, startService, waitForBackendExit } from './service-fixture.js';

describe('DatabaseService queries', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService();
    await f.db.execute('CREATE TABLE victims (id int PRIMARY KEY, name text)');
    await f.db.execute("INSERT INTO victims VALUES (1, 'one'), (2, 'two')");
  });

  afterAll(async () => {
    await f?.close();
  });

  describe('one statement per query', () => {
    it('refuses two statements in one text with SQLSTATE 42601, even without parameters', async () => {
      const error = await f.db.execute('SELECT 1; SELECT 2').catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryError);
      expect(error).toMatchObject({ sqlstate: '42601', code: 'DB_QUERY_FAILED' });
      expect((error as Error).message).not.toMatch(/SELECT/i);
    });

    it('runs no part of a stacked statement', async () => {
      for (const text of ["INSERT INTO victims VALUES (3, 'x'); DROP TABLE victims", 'DELETE FROM victims; SELECT 1']) {
        await expect(f.db.execute(text)).rejects.toMatchObject({ sqlstate: '42601' });
        await expect(f.db.transaction((tx) => tx.execute(text))).rejects.toMatchObject({ sqlstate: '42601' });
        await expect(f.db.withConnection((c) => c.execute(text))).rejects.toMatchObject({ sqlstate: '42601' });
      }
      expect(await f.db.fetch('SELECT id FROM victims ORDER BY id')).toEqual([{ id: 1 }, { id: 2 }]);
    });

    it('refuses a sql template with a stacked statement from unsafeRaw', async () => {
      await expect(f.db.execute(sql`SELECT ${1}; ${sql.unsafeRaw('DROP TABLE victims')}`)).rejects.toMatchObject({ sqlstate: '42601' });
      expect(await f.db.fetchval("SELECT to_regclass('public.victims') IS NOT NULL")).toBe(true);
    });

    it('refuses NUL in SQL text, params with a template and params that are not an array, before sending', async () => {
      await expect(f.db.execute('SELECT 1\0; DROP TABLE victims')).rejects.toBeInstanceOf(InvalidQueryError);
      await expect(f.db.query(sql`SELECT ${1}` as never, [2])).rejects.toBeInstanceOf(InvalidQueryError);
      await expect(f.db.query('SELECT $1::int', '1' as never)).rejects.toBeInstanceOf(InvalidQueryError);
      await expect(f.db.query({ text: 'SELECT 1' } as never)).rejects.toBeInstanceOf(InvalidQueryError);
    });

    it('names no statement sent on a connection handle (transactions, withConnection): an error there could not be retried', async () => {
      const scoped = ['SELECT * FROM victims WHERE id = $1 AND true', 'SELECT count(*) FROM victims WHERE id = ANY($1::int4[]) AND true'];
      const prepared = await f.db.withConnection(async (c) => {
        await c.fetch(scoped[0], [1]);
        await c.fetchval(scoped[1], [[1, 2]]);
        return c.fetch<{ statement: string }>('SELECT statement FROM pg_catalog.pg_prepared_statements');
      });
      expect(prepared.map((p) => p.statement)).not.toEqual(expect.arrayContaining([scoped[0]]));
      expect(prepared.map((p) => p.statement)).not.toEqual(expect.arrayContaining([scoped[1]]));
    });
  });

  describe('helpers', () => {
    it('query returns rows, rowCount, command and fields', async () => {
      const result = await f.db.query<{ id: number; name: string }>('SELECT id, name FROM victims ORDER BY id');
      expect(result.rows).toEqual([
        { id: 1, name: 'one' },
        { id: 2, name: 'two' },
      ]);
      expect(result.rowCount).toBe(2);
      expect(result.command).toBe('SELECT');
      expect(result.fields.map((field) => field.name)).toEqual(['id', 'name']);
    });

    it('fetchrow: exactly one row', async () => {
      await expect(f.db.fetchrow('SELECT name FROM victims WHERE id = $1', [2])).resolves.toEqual({ name: 'two' });
      await expect(f.db.fetchrow('SELECT name FROM victims WHERE id = $1', [9])).rejects.toBeInstanceOf(NotFoundError);
      await expect(f.db.fetchrow('SELECT name FROM victims')).rejects.toEqual(new TooManyRowsError(2));
    });

    it('fetchMaybeRow: null on none, TooManyRowsError on more', async () => {
      await expect(f.db.fetchMaybeRow(sql`SELECT name FROM victims WHERE id = ${1}`)).resolves.toEqual({ name: 'one' });
      await expect(f.db.fetchMaybeRow(sql`SELECT name FROM victims WHERE id = ${9}`)).resolves.toBeNull();
      await expect(f.db.fetchMaybeRow('SELECT name FROM victims')).rejects.toBeInstanceOf(TooManyRowsError);
    });

    it('fetchval: the first column of exactly one row, even when a later column has the same name', async () => {
      await expect(f.db.fetchval<number>('SELECT 1 AS a, 2 AS a')).resolves.toBe(1);
      await expect(f.db.fetchval('SELECT NULL')).resolves.toBeNull();
      await expect(f.db.fetchval('SELECT 1 WHERE false')).rejects.toBeInstanceOf(NotFoundError);
      await expect(f.db.fetchval('SELECT id FROM victims')).rejects.toBeInstanceOf(TooManyRowsError);
      await expect(f.db.fetchval('SELECT')).rejects.toBeInstanceOf(InvalidQueryError);
    });

    it('execute: the affected row count, 0 for statements without one', async () => {
      expect(await f.db.execute(sql`UPDATE victims SET name = name WHERE id IN (${sql.list([1, 2, 3])})`)).toBe(2);
      expect(await f.db.execute('UPDATE victims SET name = name WHERE false')).toBe(0);
      expect(await f.db.execute("SET search_path = 'public'")).toBe(0);
    });

    it('a statement error is a typed error without SQL text or values in production', async () => {
      const error = await f.db.fetch('SELECT secret_column FROM victims WHERE name = $1', ['hunter2']).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(QueryError);
      expect(error).toMatchObject({ sqlstate: '42703' });
      expect((error as Error).message).not.toMatch(/secret_column|victims|hunter2/);
      expect((error as Error).cause).toBeDefined();
    });
  });

  describe('identifiers', () => {
    it('quotes identifiers with quotes and dots in them', async () => {
      const table = sql.identifier('public', 'we"ird.table');
      const column = sql.identifier('col"; DROP TABLE victims; --');
      await f.db.execute(sql`CREATE TABLE ${table} (${column} int)`);
      await f.db.execute(sql`INSERT INTO ${table} (${column}) VALUES (${7})`);
      expect(await f.db.fetchval(sql`SELECT ${column} FROM ${table}`)).toBe(7);
      expect(await f.db.fetchval("SELECT count(*)::int FROM information_schema.columns WHERE table_name = 'we\"ird.table' AND column_name = $1", ['col"; DROP TABLE victims; --'])).toBe(1);
      expect(await f.db.fetchval("SELECT to_regclass('public.victims') IS NOT NULL")).toBe(true);
    });

    it('refuses invalid identifiers before anything is sent', () => {
      expect(() => sql.identifier('')).toThrow(InvalidQueryError);
      expect(() => sql.identifier('x'.repeat(64))).toThrow(InvalidQueryError);
      expect(() => sql.identifier('a\0b')).toThrow(InvalidQueryError);
    });
  });

  describe('withConnection', () => {
    let single: ServiceFixture;

    beforeAll(async () => {
      single = await startService({ poolMax: 1, statementTimeoutMs: 25_000 });
    });

    afterAll(async () => {
      await single?.close();
    });

    it('resets session state (SET, advisory locks, temp tables) but keeps the module settings, on the same connection', async () => {
      const pid = await single.db.withConnection(async (c) => {
        await c.execute("SET statement_timeout = '1s'");
        await c.execute('SET search_path = pg_catalog');
        await c.execute('CREATE TEMP TABLE scratch (id int)');
        expect(await c.fetchval('SELECT pg_try_advisory_lock(42)')).toBe(true);
        return c.fetchval<number>('SELECT pg_backend_pid()');
      });
      const after = await single.db.fetchrow<Record<string, unknown>>(
        `SELECT pg_backend_pid() AS pid, current_setting('statement_timeout') AS statement_timeout,
                current_setting('search_path') AS search_path, current_setting('application_name') <> '' AS named,
                to_regclass('pg_temp.scratch') IS NULL AS no_temp,
                (SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS advisory_locks`,
      );
      expect(after).toEqual({ pid, statement_timeout: '25s', search_path: '"$user", public', named: true, no_temp: true, advisory_locks: 0 });
    });

    it('destroys the connection when DISCARD ALL fails (a transaction left open)', async () => {
      const pid = await single.db.withConnection(async (c) => {
        await c.execute('BEGIN');
        return c.fetchval<number>('SELECT pg_backend_pid()');
      });
      expect(checkedOut(single.db)).toBe(0);
      expect(await single.db.fetchval('SELECT pg_backend_pid()')).not.toBe(pid);
    });

    it('releases the connection when the callback throws, and rethrows the error unchanged', async () => {
      const thrown = new Error('callback failed');
      await expect(single.db.withConnection(async () => Promise.reject(thrown))).rejects.toBe(thrown);
      expect(checkedOut(single.db)).toBe(0);
      expect(await single.db.fetchval('SELECT 1')).toBe(1);
    });

    it('a handle kept after the callback refuses to query', async () => {
      let kept!: ScopedConnection;
      await single.db.withConnection(async (c) => {
        kept = c;
      });
      await expect(kept.fetchval('SELECT 1')).rejects.toBeInstanceOf(InvalidQueryError);
    });

    it('a connection killed by the server is destroyed: typed error, no leak, the next query works', async () => {
      const before = single.db.stats().total;
      const error = await single.db
        .withConnection(async (c) => {
          const pid = await c.fetchval<number>('SELECT pg_backend_pid()');
          await single.cluster.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
          await waitForBackendExit(single.cluster, pid);
          return c.fetchval('SELECT 1');
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ConnectionError);
      expect(checkedOut(single.db)).toBe(0);
      expect(single.db.stats().total).toBe(before - 1);
      expect(await single.db.fetchval('SELECT 1')).toBe(1);
    });

    it('a query that kills its own connection through the service destroys it', async () => {
      const pid = await single.db.fetchval<number>('SELECT pg_backend_pid()');
      await expect(single.db.execute('SELECT pg_terminate_backend(pg_backend_pid())')).rejects.toBeInstanceOf(ConnectionError);
      expect(checkedOut(single.db)).toBe(0);
      expect(await single.db.fetchval('SELECT pg_backend_pid()')).not.toBe(pid);
    });
  });
});
