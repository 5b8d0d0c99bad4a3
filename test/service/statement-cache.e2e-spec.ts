import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from '../../src/index.js';
import { type ServiceFixture, startService } from './service-fixture.js';

interface Prepared {
  name: string;
  statement: string;
  executions: number;
}

/**
 * Autocommit statements are named prepared statements per connection: parsed and planned once, then
 * Bind/Execute only. One connection (poolMax 1) makes "the connection" certain.
 */
describe('statement cache', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ poolMax: 1 });
    await f.db.execute('CREATE TABLE gadgets (id int PRIMARY KEY, name text NOT NULL)');
    await f.db.execute(sql`INSERT INTO gadgets SELECT g, 'gadget-' || g FROM generate_series(1, 50) g`);
  });
  afterAll(() => f?.close());

  const prepared = () =>
    f.db.fetch<Prepared>(
      'SELECT name, statement, (generic_plans + custom_plans)::int AS executions FROM pg_catalog.pg_prepared_statements ORDER BY prepare_time',
    );

  it('a repeated statement is prepared once on the connection and executed under its name', async () => {
    const text = 'SELECT name FROM gadgets WHERE id = $1';
    for (let id = 1; id <= 5; id++) expect(await f.db.fetchval(text, [id])).toBe(`gadget-${id}`);
    const mine = (await prepared()).filter((p) => p.statement === text);
    expect(mine).toHaveLength(1);
    expect(mine[0].name).toMatch(/^nsp_\d+$/);
    expect(mine[0].executions).toBe(5);
  });

  it('keeps at most 100 statements per connection, closing the least recently used', async () => {
    for (let i = 0; i < 150; i++) await f.db.fetchval(`SELECT ${i}::int + $1`, [1]);
    const all = await prepared();
    expect(all.length).toBeLessThanOrEqual(100);
    expect(all.map((p) => p.statement)).toContain('SELECT 149::int + $1');
    expect(all.map((p) => p.statement)).not.toContain('SELECT 0::int + $1');
  });

  it('a schema change that invalidates a cached plan re-prepares once instead of failing', async () => {
    const text = 'SELECT * FROM gadgets WHERE id = $1';
    expect(await f.db.fetchrow(text, [1])).toEqual({ id: 1, name: 'gadget-1' });
    await f.db.execute('ALTER TABLE gadgets ADD COLUMN colour text');
    expect(await f.db.fetchrow(text, [1])).toEqual({ id: 1, name: 'gadget-1', colour: null });
  });

  it('statements dropped behind its back (DEALLOCATE ALL) cost a retry, never a failure; repeated, the cache switches off', async () => {
    const text = 'SELECT name FROM gadgets WHERE id = $1 AND true';
    for (let round = 0; round < 3; round++) {
      expect(await f.db.fetchval(text, [2])).toBe('gadget-2');
      await f.db.execute('DEALLOCATE ALL');
      expect(await f.db.fetchval(text, [3])).toBe('gadget-3'); // 26000, retried unnamed
    }
    await f.db.fetchval(text, [4]);
    expect(await prepared()).toEqual([]); // off: nothing named any more
  });

  it('DATABASE_STATEMENT_CACHE_SIZE=0 turns it off', async () => {
    const g = await startService({ poolMax: 1, statementCacheSize: '0' });
    try {
      await g.db.fetchval('SELECT $1::int', [1]);
      expect(await g.db.fetch('SELECT name FROM pg_catalog.pg_prepared_statements')).toEqual([]);
    } finally {
      await g.close();
    }
  });

  it('a session reset (DISCARD ALL after a SET) drops the connection\'s statements without a failure', async () => {
    const g = await startService({ poolMax: 1 });
    try {
      const text = 'SELECT pg_catalog.current_setting($1)';
      expect(await g.db.fetchval(text, ['application_name'])).toBeTruthy();
      await g.db.execute('SET work_mem = 1024'); // reset with DISCARD ALL
      expect(await g.db.fetchval(text, ['work_mem'])).toBe('4MB');
      expect((await g.db.fetch<Prepared>('SELECT statement FROM pg_catalog.pg_prepared_statements')).map((p) => p.statement)).toContain(text);
    } finally {
      await g.close();
    }
  });
});
