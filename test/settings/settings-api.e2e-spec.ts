import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type DatabaseService, InvalidQueryError, getDatabaseServiceToken, sql } from '../../src/index.js';
import type { ServiceFixture } from '../service/service-fixture.js';
import { type TransactionTarget, directTarget, transactionPoolerTarget } from '../service/transaction-targets.js';
import { createTenantTable } from './tenant-table.js';

/**
 * What each entry point does with settings: per call, per withSettings scope (nested, across
 * connections), per transaction and withConnection, streams; where settings are refused; and that they
 * end with what they were given for. One pooled connection (poolMax 1) makes "the next caller" the
 * same server session. Directly (pipelining and the statement cache on) and behind a transaction pooler.
 */
const label = "app.label";
const current = `SELECT pg_catalog.current_setting('${label}', true) AS label`;

describe.each<[string, TransactionTarget]>([
  ['direct, pipelining on, statement cache on', directTarget()],
  ['behind PgBouncer in transaction mode', transactionPoolerTarget()],
])('settings (%s)', (_, target) => {
  let f: ServiceFixture;
  let db: DatabaseService;
  let other: DatabaseService;

  beforeAll(async () => {
    await target.setUp();
    f = await target.start({ poolMax: 1 }, [], 'second');
    db = f.db;
    other = f.moduleRef.get(getDatabaseServiceToken('second'));
    await createTenantTable(f.cluster, f.cluster.facts.user, 3, 2);
  });
  afterAll(async () => {
    await f?.close();
    await target.tearDown();
  });

  const labelNow = (service = db) => service.fetchval<string | null>(current);

  it('a call with settings runs with them (values bound, never text), and the next call on the connection without', async () => {
    const value = "x'); DROP TABLE tenant_rows; --";
    expect(await db.fetchval(current, [], { settings: { [label]: value } })).toBe(value);
    expect(await db.fetchval(sql`SELECT pg_catalog.current_setting('app.label', true)`, { settings: { 'App.Label': 'sql tag' } })).toBe('sql tag');
    expect(await labelNow()).toBe(''); // in use now: set empty for a call that does not give it
    expect(await db.fetchval('SELECT count(*)::int FROM tenant_rows', [], { settings: { 'app.tenant_id': 2 } })).toBe(2);
    expect(await db.fetchval('SELECT count(*)::int FROM tenant_rows')).toBe(0);
  });

  it('built-in settings are refused before anything is sent, saying what to give instead', async () => {
    for (const name of ['role', 'session_authorization', 'search_path']) {
      await expect(db.fetch('SELECT 1', [], { settings: { [name]: 'postgres' } })).rejects.toThrow(new RegExp(`"${name}" is not a custom setting name: give prefix\\.name`));
      await expect(db.transaction(async () => undefined, { settings: { [name]: 'postgres' } })).rejects.toBeInstanceOf(InvalidQueryError);
      await expect(db.withSettings({ [name]: 'postgres' }, async () => undefined)).rejects.toBeInstanceOf(InvalidQueryError);
    }
    expect(await db.fetchval<string>('SELECT current_user')).toBe(f.cluster.facts.user);
  });

  it('withSettings: every statement inside it, nested scopes merge (inner wins), a call merges over them; other connections of the module too', async () => {
    const seen = await db.withSettings({ [label]: 'outer', 'app.region': 'eu' }, async () => {
      const outer = await db.fetchrow(`${current}, pg_catalog.current_setting('app.region', true) AS region`);
      const inner = await db.withSettings({ [label]: 'inner' }, () => db.fetchrow(`${current}, pg_catalog.current_setting('app.region', true) AS region`));
      const call = await db.fetchval(current, [], { settings: { [label]: 'call' } });
      const second = await labelNow(other);
      return { outer, inner, call, second };
    });
    expect(seen).toEqual({ outer: { label: 'outer', region: 'eu' }, inner: { label: 'inner', region: 'eu' }, call: 'call', second: 'outer' });
    expect(await labelNow()).toBe('');
  });

  it('work left running after withSettings settles runs without its settings', async () => {
    let later!: () => Promise<string | null>;
    await db.withSettings({ [label]: 'scoped' }, async () => {
      later = () => labelNow();
    });
    expect(await later()).not.toBe('scoped');
  });

  it('a transaction runs every statement with its settings (joined calls too); a call inside asking for others is refused', async () => {
    const seen = await db.transaction(
      async (tx) => {
        const own = await tx.fetchval(current);
        const joined = await labelNow();
        const same = await tx.fetchval(current, [], { settings: { [label]: 'tx' } });
        await expect(tx.fetchval(current, [], { settings: { [label]: 'other' } })).rejects.toThrow(/settings were given that this connection does not already run with/);
        await expect(db.withSettings({ [label]: 'other' }, () => labelNow())).rejects.toThrow(/pass them to transaction\(fn, \{ settings \}\)/);
        const nested = await tx.transaction((inner) => inner.fetchval(current));
        return { own, joined, same, nested };
      },
      { settings: { [label]: 'tx' } },
    );
    expect(seen).toEqual({ own: 'tx', joined: 'tx', same: 'tx', nested: 'tx' });
    expect(await labelNow()).toBe('');
    // A transaction begun inside withSettings takes its settings.
    expect(await db.withSettings({ 'app.tenant_id': 3 }, () => db.transaction((tx) => tx.fetchval('SELECT count(*)::int FROM tenant_rows')))).toBe(2);
  });

  it('streams run with their settings, given per call or by withSettings', async () => {
    const tenants = async (rows: AsyncIterable<{ tenant_id: number }>) => {
      const seen: number[] = [];
      for await (const row of rows) seen.push(row.tenant_id);
      return seen;
    };
    expect(await tenants(db.stream('SELECT tenant_id FROM tenant_rows', [], { settings: { 'app.tenant_id': 1 }, batchSize: 1 }))).toEqual([1, 1]);
    expect(await db.withSettings({ 'app.tenant_id': 2 }, () => tenants(db.stream('SELECT tenant_id FROM tenant_rows')))).toEqual([2, 2]);
    expect(await tenants(db.stream('SELECT tenant_id FROM tenant_rows'))).toEqual([]);
  });
});

describe('settings on withConnection (direct, pipelining on)', () => {
  const target = directTarget();
  let f: ServiceFixture;
  let db: DatabaseService;

  beforeAll(async () => {
    f = await target.start({ poolMax: 1 });
    db = f.db;
  });
  afterAll(() => f?.close());

  const labelNow = (q: Pick<DatabaseService, 'fetchval'> = db) => q.fetchval<string | null>(current);

  it('the session has them for the callback, and loses them on release; a statement may have its own, but not inside a transaction the callback began', async () => {
    await db.withConnection(
      async (connection) => {
        expect(await labelNow(connection)).toBe('session');
        expect(await connection.fetchval(current, [], { settings: { [label]: 'statement' } })).toBe('statement');
        expect(await labelNow(connection)).toBe('session');
        await connection.execute("SELECT 1");
      },
      { settings: { [label]: 'session' } },
    );
    expect(await labelNow()).toBe('');
    await expect(
      db.withConnection(async (connection) => {
        await connection.execute('BEGIN');
        try {
          await connection.fetchval(current, [], { settings: { [label]: 'inside' } });
        } finally {
          await connection.execute('ROLLBACK');
        }
      }),
    ).rejects.toThrow(/settings cannot be given for one statement inside a transaction/);
  });
});
