import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { sql } from '../../src/index.js';
import { CONNECTION_TEXT_BUDGET, MAX_NAMED_TEXT_LENGTH } from '../../src/secure-database/service/statement-cache.js';
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
    // A random prefix of this cache and a hash of the text: no other process or module has this name.
    expect(mine[0].name).toMatch(/^nsp[0-9a-f]{12}_[0-9a-f]{32}$/);
    expect(mine[0].executions).toBe(5);
  });

  it('keeps at most 100 statements per connection, closing the least recently used', async () => {
    for (let i = 0; i < 150; i++) await f.db.fetchval(`SELECT ${i}::int + $1`, [1]);
    const all = await prepared();
    expect(all.length).toBeLessThanOrEqual(100);
    expect(all.map((p) => p.statement)).toContain('SELECT 149::int + $1');
    expect(all.map((p) => p.statement)).not.toContain('SELECT 0::int + $1');
  });

  it('evicts the least recently used statement, not the oldest', async () => {
    const g = await startService({ poolMax: 1, statementCacheSize: '3' });
    try {
      const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((tag) => `SELECT $1::text || '${tag}'`);
      for (const text of [a, b, c]) await g.db.fetchval(text, ['x']);
      await g.db.fetchval(a, ['x']); // a is used again: b is now the least recently used
      await g.db.fetchval(d, ['x']);
      // Read on the same (only) connection without naming the reading statement itself.
      const statements = (await g.db.withConnection((c) => c.fetch<Prepared>('SELECT statement FROM pg_catalog.pg_prepared_statements'))).map((p) => p.statement);
      expect(statements.sort()).toEqual([a, c, d].sort());
    } finally {
      await g.close();
    }
  });

  it(`never names a text over ${MAX_NAMED_TEXT_LENGTH} characters, and keeps at most ${CONNECTION_TEXT_BUDGET} characters of text per connection`, async () => {
    // The attack: 100 distinct sql.list() lengths of thousands of ids each, every one a plan kept in the backend.
    for (let n = 0; n < 100; n++) {
      const ids = Array.from({ length: 3_000 + n }, (_, i) => i);
      expect(await f.db.fetchval(sql`SELECT count(*)::int FROM gadgets WHERE id IN (${sql.list(ids)})`)).toBe(50);
    }
    // Texts just under the limit are named, within the per-connection budget.
    const filler = (i: number) => `SELECT ${i}::int + $1 ${'-- padding\n'.repeat(Math.floor((MAX_NAMED_TEXT_LENGTH - 40) / 11))}`;
    for (let i = 0; i < 60; i++) expect(await f.db.fetchval(filler(i), [1])).toBe(i + 1);
    const all = await prepared();
    expect(all.every((p) => p.statement.length <= MAX_NAMED_TEXT_LENGTH)).toBe(true);
    expect(all.some((p) => p.statement === filler(59))).toBe(true);
    expect(all.reduce((sum, p) => sum + p.statement.length, 0)).toBeLessThanOrEqual(CONNECTION_TEXT_BUDGET);
  });

  it('a schema change that invalidates a cached plan re-prepares once instead of failing, and the cache stays on', async () => {
    const text = 'SELECT * FROM gadgets WHERE id = $1';
    expect(await f.db.fetchrow(text, [1])).toEqual({ id: 1, name: 'gadget-1' });
    // On the raw connection: through the service, ALTER would reset the session (and the cache with it).
    await f.databasePool.withClient((client) => client.query('ALTER TABLE gadgets ADD COLUMN colour text'));
    for (let id = 1; id <= 4; id++) expect(await f.db.fetchrow(text, [id])).toEqual({ id, name: `gadget-${id}`, colour: null });
    // Re-prepared under its name (a fresh statement: exactly the 4 executions since), and later statements are still named.
    const mine = (await prepared()).filter((p) => p.statement === text);
    expect(mine).toHaveLength(1);
    expect(mine[0].executions).toBe(4);
    const later = 'SELECT name FROM gadgets WHERE id = $1 AND name IS NOT NULL';
    await f.db.fetchval(later, [1]);
    expect((await prepared()).map((p) => p.statement)).toContain(later);
  });

  it('later executions of a cached statement send Bind/Execute only (no Describe) and parse rows with the kept description, in every row mode', async () => {
    const g = await startService({ poolMax: 1, rowCase: 'camel' });
    try {
      await g.db.execute('CREATE TABLE widgets (id int PRIMARY KEY, widget_name text NOT NULL, made_at date)');
      await g.db.execute(sql`INSERT INTO widgets VALUES (1, 'one', '2026-01-02'), (2, 'two', NULL)`);
      // Counts the Describe messages the (only) connection writes.
      const client = await g.databasePool.acquire();
      const connection = (client as unknown as { connection: { describe(message: unknown): void } }).connection;
      let describes = 0;
      const describe = connection.describe.bind(connection);
      connection.describe = (message) => {
        describes++;
        describe(message);
      };
      g.databasePool.release(client);
      const text = 'SELECT id, widget_name, made_at FROM widgets WHERE id = $1';
      const insert = 'INSERT INTO widgets (id, widget_name) VALUES ($1, $2)';
      expect(await g.db.fetchrow(text, [1])).toEqual({ id: 1, widgetName: 'one', madeAt: new Date(2026, 0, 2) });
      await g.db.execute(insert, [3, 'three']);
      const described = describes;
      for (let round = 0; round < 3; round++) {
        // Object rows renamed by rowCase, with the date parser: as the first, described execution.
        expect(await g.db.fetchrow(text, [1])).toEqual({ id: 1, widgetName: 'one', madeAt: new Date(2026, 0, 2) });
        expect(await g.db.fetchrow(text, [2])).toEqual({ id: 2, widgetName: 'two', madeAt: null });
        // Array rows of the same statement (fetchval) are built from the same kept description.
        expect(await g.db.fetchval(text, [2])).toBe(2);
        // A statement without rows (NoData) is kept too.
        expect(await g.db.execute(insert, [10 + round, 'more'])).toBe(1);
      }
      expect(await g.db.query(text, [2])).toMatchObject({ rowCount: 1, command: 'SELECT', fields: [{ name: 'id' }, { name: 'widgetName' }, { name: 'madeAt' }] });
      expect(describes).toBe(described);
    } finally {
      await g.close();
    }
  });

  it('a column type change under a cached statement with a kept description re-prepares it and parses rows by the new type', async () => {
    const text = 'SELECT id, name FROM gadgets WHERE id = $1 AND id < 1000';
    for (let round = 0; round < 2; round++) expect(await f.db.fetchrow(text, [7])).toEqual({ id: 7, name: 'gadget-7' });
    await f.databasePool.withClient((client) => client.query('ALTER TABLE gadgets ALTER COLUMN id TYPE bigint'));
    try {
      // bigint comes back as a string (pg's default parser for int8): the kept int4 parser is not used.
      for (let round = 0; round < 2; round++) expect(await f.db.fetchrow(text, [7])).toEqual({ id: '7', name: 'gadget-7' });
    } finally {
      await f.databasePool.withClient((client) => client.query('ALTER TABLE gadgets ALTER COLUMN id TYPE int'));
    }
    expect(await f.db.fetchrow(text, [7])).toEqual({ id: 7, name: 'gadget-7' });
  });

  it('statements inside withConnection, and inside transactions that may not rerun (retries: 0), are never named', async () => {
    const text = 'SELECT name FROM gadgets WHERE id = $1 AND id > 0';
    await f.db.transaction((tx) => tx.fetchval(text, [1]), { retries: 0 });
    await f.db.withConnection((c) => c.fetchval(text, [1]));
    expect((await prepared()).map((p) => p.statement)).not.toContain(text);
  });

  it('statements inside transactions are named; a stale plan there (0A000) reruns the whole transaction once, its statements parsed again', async () => {
    await f.db.execute('CREATE TABLE parts (id int PRIMARY KEY, name text NOT NULL)');
    await f.db.execute("INSERT INTO parts VALUES (9, 'part-9')");
    const text = 'SELECT * FROM parts WHERE id = $1';
    const write = 'UPDATE parts SET name = $2 WHERE id = $1';
    const run = async () => {
      let calls = 0;
      const row = await f.db.transaction(async (tx) => {
        calls++;
        await tx.execute(write, [9, 'part-9']);
        return tx.fetchrow(text, [9]);
      });
      return { calls, row };
    };
    expect(await run()).toEqual({ calls: 1, row: { id: 9, name: 'part-9' } });
    expect(await run()).toEqual({ calls: 1, row: { id: 9, name: 'part-9' } });
    const named = (await prepared()).filter((p) => p.statement === text || p.statement === write);
    expect(named.map((p) => [p.statement, p.executions])).toEqual([
      [write, 2],
      [text, 2],
    ]);
    await f.databasePool.withClient((client) => client.query('ALTER TABLE parts ADD COLUMN weight int'));
    try {
      // The SELECT's plan went stale: it fails, the transaction rolls back and runs again, with the new column.
      expect(await run()).toEqual({ calls: 2, row: { id: 9, name: 'part-9', weight: null } });
      expect(await run()).toEqual({ calls: 1, row: { id: 9, name: 'part-9', weight: null } });
    } finally {
      await f.databasePool.withClient((client) => client.query('ALTER TABLE parts DROP COLUMN weight'));
    }
  });

  it('a name the server has but the client forgot (42P05 on Parse) costs a retry, never a failure', async () => {
    const g = await startService({ poolMax: 1 });
    try {
      const text = 'SELECT $1::int * 2';
      expect(await g.db.fetchval(text, [21])).toBe(42);
      const [{ name }] = await g.db.fetch<Prepared>('SELECT name FROM pg_catalog.pg_prepared_statements');
      // The client loses track of it (the server keeps it): the next use sends Parse again.
      const client = await g.databasePool.acquire();
      delete (client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements[name];
      g.databasePool.release(client);
      expect(await g.db.fetchval(text, [21])).toBe(42);
      expect(await g.db.fetchval(text, [5])).toBe(10);
    } finally {
      await g.close();
    }
  });

  it('DEALLOCATE ALL through the service resets the session: the cache knows, nothing fails and it stays on', async () => {
    const text = 'SELECT name FROM gadgets WHERE id = $1 AND 1 = 1';
    for (let round = 0; round < 3; round++) {
      expect(await f.db.fetchval(text, [2])).toBe('gadget-2');
      await f.db.execute('DEALLOCATE ALL');
      expect(await f.db.fetchval(text, [3])).toBe('gadget-3');
    }
    expect((await prepared()).map((p) => p.statement)).toContain(text);
  });

  it('statements dropped behind its back (DEALLOCATE ALL on the raw connection) cost a retry, never a failure; repeated, the cache switches off', async () => {
    const text = 'SELECT name FROM gadgets WHERE id = $1 AND true';
    for (let round = 0; round < 3; round++) {
      expect(await f.db.fetchval(text, [2])).toBe('gadget-2');
      await f.databasePool.withClient((client) => client.query('DEALLOCATE ALL'));
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
