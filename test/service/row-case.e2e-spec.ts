import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { RowCaseCollisionError } from '../../src/index.js';
import { readDatabaseEnv } from '../../src/secure-database/config/database.config.js';
import { type ServiceFixture, checkedOut, startService } from './service-fixture.js';

const SCHEMA_SQL = [
  'CREATE TABLE articles (id int PRIMARY KEY, author_id int, created_at date, "updatedAt" date, _private text, col_2 int)',
  "INSERT INTO articles VALUES (1, 7, '2026-01-02', '2026-01-03', 'p', 2), (2, 8, '2026-02-02', NULL, NULL, NULL)",
];
const ROW_1 = { id: 1, authorId: 7, createdAt: new Date(2026, 0, 2), updatedAt: new Date(2026, 0, 3), _private: 'p', col2: 2 };
const SELECT_1 = 'SELECT * FROM articles WHERE id = $1';

describe('rowCase camel (DATABASE_ROW_CASE=camel)', () => {
  let camel: ServiceFixture;
  let plain: ServiceFixture;

  beforeAll(async () => {
    camel = await startService(readDatabaseEnv({ DATABASE_ROW_CASE: 'camel' }));
    plain = await startService();
    for (const f of [camel, plain]) for (const statement of SCHEMA_SQL) await f.db.execute(statement);
  });

  afterAll(async () => {
    await camel?.close();
    await plain?.close();
  });

  it('maps the keys of every query helper, in transactions and withConnection, and on a cached statement’s later runs', async () => {
    expect(await camel.db.fetchrow(SELECT_1, [1])).toEqual(ROW_1);
    expect(await camel.db.fetchrow(SELECT_1, [1])).toEqual(ROW_1); // second run: the named statement from the cache
    expect((await camel.db.query(SELECT_1, [1])).rows).toEqual([ROW_1]);
    expect((await camel.db.query(SELECT_1, [1])).fields.map((f) => f.name)).toEqual(['id', 'authorId', 'createdAt', 'updatedAt', '_private', 'col2']);
    expect(await camel.db.fetchMaybeRow(SELECT_1, [1])).toEqual(ROW_1);
    expect(await camel.db.transaction((tx) => tx.fetch(SELECT_1, [1]))).toEqual([ROW_1]);
    expect(await camel.db.withConnection((c) => c.fetchrow(SELECT_1, [1]))).toEqual(ROW_1);
  });

  it('maps the keys of streamed rows', async () => {
    const rows: unknown[] = [];
    for await (const row of camel.db.stream('SELECT id, author_id, created_at FROM articles ORDER BY id', [], { batchSize: 1 })) rows.push(row);
    expect(rows).toEqual([
      { id: 1, authorId: 7, createdAt: new Date(2026, 0, 2) },
      { id: 2, authorId: 8, createdAt: new Date(2026, 1, 2) },
    ]);
  });

  it('leaves the raw pg.Pool of the same module and a module without the option alone', async () => {
    expect((await camel.db.pool.query('SELECT author_id FROM articles WHERE id = 1')).rows).toEqual([{ author_id: 7 }]);
    expect(await plain.db.fetchrow('SELECT author_id, created_at FROM articles WHERE id = 1')).toEqual({ author_id: 7, created_at: new Date(2026, 0, 2) });
  });

  it('two columns mapping to one key are a RowCaseCollisionError naming positions, not names, from the helpers and streams; the connection stays clean', async () => {
    const text = 'SELECT author_id, 1 AS x, "updatedAt" AS "authorId" FROM articles';
    const fetched = await camel.db.fetch(text).catch((e: unknown) => e);
    expect(fetched).toBeInstanceOf(RowCaseCollisionError);
    expect(fetched).toMatchObject({ code: 'DB_ROW_CASE_COLLISION', firstColumn: 1, secondColumn: 3 });
    expect((fetched as Error).message).not.toMatch(/author/i);
    const streamed = await (async () => {
      for await (const _ of camel.db.stream(text, [], { batchSize: 1 }));
    })().catch((e: unknown) => e);
    expect(streamed).toBeInstanceOf(RowCaseCollisionError);
    // The same name twice is not a collision made by the mapping: pg's own behaviour (the last wins).
    expect(await camel.db.fetchrow('SELECT 1 AS a_b, 2 AS a_b')).toEqual({ aB: 2 });
    expect(checkedOut(camel.db)).toBe(0);
    expect(await camel.db.fetchval('SELECT count(*)::int FROM articles')).toBe(2);
  });
});
