import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InvalidQueryError, type DatabaseService } from '../../src/index.js';
import { type ServiceFixture, deferred, startService } from './service-fixture.js';

/**
 * Session objects one caller creates through the module (temporary tables and views that shadow a real
 * table, WITH HOLD cursors holding another request's rows, session advisory locks and settings) must
 * never reach the next caller of the same pooled connection. pg reports only the first word of the
 * command tag, and CREATE TABLE … AS / SELECT … INTO report SELECT, so none of these may be judged by
 * the tag alone. One connection (poolMax 1) makes "the next caller" certain; the backend pid shows the
 * session was reset, not replaced. Every form runs with and without pipelining (and the statement
 * cache on, as by default), through the service and inside transaction().
 */
const FORMS: Array<[string, string]> = [
  ['CREATE TEMP TABLE … AS', "CREATE TEMP TABLE prices AS SELECT 'shadow'::text AS v"],
  ['SELECT … INTO TEMP', "SELECT 'shadow'::text AS v INTO TEMP prices"],
  ['CREATE TEMP VIEW', "CREATE TEMP VIEW prices AS SELECT 'shadow'::text AS v"],
  ['CREATE TABLE pg_temp. … AS', "CREATE TABLE pg_temp.prices AS SELECT 'shadow'::text AS v"],
  ['CREATE TABLE pg_temp. (…)', 'CREATE TABLE pg_temp.prices (v text)'],
  ['CREATE TEMPORARY TABLE (…)', 'CREATE TEMPORARY TABLE prices (v text)'],
];

interface Seen {
  pid: number;
  price: string | null;
  advisoryLocks: number;
  tenant: string | null;
}

describe.each([
  ['without pipelining', false],
  ['with pipelining', true],
])('session objects do not reach the next caller (%s, statement cache on)', (_, pipelining) => {
  let f: ServiceFixture;
  let db: DatabaseService;

  beforeAll(async () => {
    f = await startService({ poolMax: 1, pipelining });
    db = f.db;
    await db.execute('CREATE TABLE prices (v text)');
    await db.execute("INSERT INTO prices VALUES ('real')");
    await db.execute('CREATE TABLE orders (id int, owner text)');
    await db.execute("INSERT INTO orders VALUES (1, 'carol'), (2, 'carol')");
  });
  afterAll(() => f?.close());

  // What the next caller sees: the real prices row (not a shadow), no advisory lock, no leftover setting.
  const seen = () =>
    db.fetchrow<Seen>(
      `SELECT pg_catalog.pg_backend_pid() AS pid, (SELECT v FROM prices LIMIT 1) AS price,
              (SELECT count(*)::int FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid()) AS "advisoryLocks",
              NULLIF(pg_catalog.current_setting('app.tenant_id', true), '') AS tenant`,
    );

  const clean = (pid: number): Seen => ({ pid, price: 'real', advisoryLocks: 0, tenant: null });

  it.each(FORMS)('%s through the service', async (_, statement) => {
    const { pid } = await seen();
    await db.execute(statement);
    expect(await seen()).toEqual(clean(pid));
  });

  it.each(FORMS)('%s inside a transaction', async (_, statement) => {
    const { pid } = await seen();
    await db.transaction(async (tx) => {
      await tx.execute(statement);
      // The shadow is in effect for this caller: the real row is hidden.
      expect(await tx.fetchval("SELECT count(*)::int FROM prices WHERE v = 'real'")).toBe(0);
    });
    expect(await seen()).toEqual(clean(pid));
  });

  it.each([
    ['through the service', (statement: string) => db.execute(statement)],
    ['inside a transaction', (statement: string) => db.transaction((tx) => tx.execute(statement))],
  ])("a WITH HOLD cursor over another request's rows is gone for the next caller (%s)", async (_, declare) => {
    const { pid } = await seen();
    await declare("DECLARE carol_cur CURSOR WITH HOLD FOR SELECT id FROM orders WHERE owner = 'carol'");
    await expect(db.fetch('FETCH ALL FROM carol_cur')).rejects.toMatchObject({ sqlstate: '34000' });
    expect((await seen()).pid).toBe(pid);
  });

  it.each([
    ['a session advisory lock', 'SELECT pg_catalog.pg_advisory_lock(4242)'],
    ['a try-lock, shared', 'SELECT pg_catalog.pg_try_advisory_lock_shared(4242)'],
    ['a session-level set_config', "SELECT pg_catalog.set_config('app.tenant_id', '42', false)"],
    ['set_config with a bound is_local', "SELECT pg_catalog.set_config('app.tenant_id', '42', $1)"],
  ])('%s through the service is released / reset for the next caller', async (_, statement) => {
    const { pid } = await seen();
    await db.fetch(statement, statement.includes('$1') ? [false] : undefined);
    expect(await seen()).toEqual(clean(pid));
  });

  it('a transaction-local set_config needs no reset: the statement cache keeps its statements', async () => {
    const text = 'SELECT v FROM prices WHERE v = $1';
    await db.fetchval(text, ['real']);
    await db.transaction((tx) => tx.fetch("SELECT pg_catalog.set_config('app.tenant_id', '42', true)"));
    await db.fetchval(text, ['real']);
    const named = await db.fetch<{ statement: string }>('SELECT statement FROM pg_catalog.pg_prepared_statements');
    expect(named.map((row) => row.statement)).toContain(text);
  });
});

describe('transaction control never goes through the query helpers', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ poolMax: 1, pipelining: true });
    await f.db.execute('CREATE TABLE ledger (id serial PRIMARY KEY, who text NOT NULL)');
  });
  afterAll(() => f?.close());

  it.each(['BEGIN', 'START TRANSACTION', 'COMMIT', 'ROLLBACK', 'END', 'ABORT', "PREPARE TRANSACTION 'x'", '/* hidden */ begin'])(
    'the service refuses %s, pointing at transaction()',
    async (statement) => {
      await expect(f.db.execute(statement)).rejects.toThrow(InvalidQueryError);
      await expect(f.db.execute(statement)).rejects.toThrow(/db\.transaction/);
      await expect(f.db.stream(statement).next()).rejects.toThrow(InvalidQueryError);
    },
  );

  it('a transaction handle refuses COMMIT and ROLLBACK but allows savepoints', async () => {
    await f.db.transaction(async (tx) => {
      await expect(tx.execute('COMMIT')).rejects.toThrow(/return from the callback/);
      await expect(tx.execute('ROLLBACK')).rejects.toThrow(InvalidQueryError);
      await tx.execute('SAVEPOINT a');
      await tx.execute("INSERT INTO ledger (who) VALUES ('undone')");
      await tx.execute('ROLLBACK TO SAVEPOINT a');
      await tx.execute("INSERT INTO ledger (who) VALUES ('kept')");
      await tx.execute('RELEASE SAVEPOINT a');
    });
    expect(await f.db.fetch('SELECT who FROM ledger')).toEqual([{ who: 'kept' }]);
  });

  it("the attack: three callers on one pipelined connection, one sends BEGIN; nobody is captured", async () => {
    // Before: A's BEGIN was pipelined, B's insert joined A's connection inside A's transaction and was
    // rolled back with it, C ran inside it. Now A is refused and B and C run in transactions of their own.
    const a = (async () => {
      await f.db.execute('BEGIN');
      await f.db.execute("INSERT INTO ledger (who) VALUES ('a')");
      await f.db.execute('ROLLBACK');
    })();
    const b = f.db.execute("INSERT INTO ledger (who) VALUES ('b')");
    const c = f.db.fetchval<boolean>('SELECT pg_catalog.txid_current_if_assigned() IS NULL');
    await expect(a).rejects.toThrow(InvalidQueryError);
    expect(await b).toBe(1);
    expect(await c).toBe(true); // nothing written in C's transaction: it was not A's
    expect((await f.db.fetch<{ who: string }>('SELECT who FROM ledger ORDER BY id')).map((r) => r.who)).toEqual(['kept', 'b']);
  });
});

describe('DISCARD ALL through the service behind a session pooler (DATABASE_POOLER=session)', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    // The module's timeouts are session settings here (no startup parameters): DISCARD ALL removes them.
    f = await startService({ poolMax: 1, pooler: 'session', statementTimeoutMs: 7000 });
  });
  afterAll(() => f?.close());

  it('is followed by the module restoring its timeouts on that connection', async () => {
    const pid = await f.db.fetchval<number>('SELECT pg_catalog.pg_backend_pid()');
    expect(await f.db.fetchval('SHOW statement_timeout')).toBe('7s');
    await f.db.execute('DISCARD ALL');
    expect(await f.db.fetchval('SELECT pg_catalog.pg_backend_pid()')).toBe(pid);
    expect(await f.db.fetchval('SHOW statement_timeout')).toBe('7s');
  });
});
