import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { dirname, join } from 'node:path';
import { Test, type TestingModule } from '@nestjs/testing';
import { DatabaseService, SecureDatabaseModule, SessionUnavailableError, sql } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import type { ServiceFixture } from '../service/service-fixture.js';
import { type TransactionTarget, directTarget, transactionPoolerTarget } from '../service/transaction-targets.js';
import { createTenantTable } from './tenant-table.js';

/**
 * Tenant isolation with Row-Level Security: settings given per call or per withSettings scope apply to
 * exactly the statements they were given for, on whatever connection those run, and never to another
 * caller's: with the statement cache on (the default), with pipelining on, and behind a transaction
 * pooler. The table is owned by another role than the app's, with RLS enabled and forced, and its
 * policy reads app.tenant_id: a statement without it sees no row.
 */
const TENANTS = 8;
const CALLERS = 64;
const OPERATIONS = 20_000;

type TenantRow = { tenant_id: number };
const settingsOf = (tenant: number) => ({ 'app.tenant_id': tenant });

const TARGETS: Array<[string, TransactionTarget, { pipelining: boolean }]> = [
  ['direct, statement cache on, pipelining off', directTarget(), { pipelining: false }],
  ['direct, statement cache on, pipelining on', directTarget(), { pipelining: true }],
  ['behind PgBouncer in transaction mode, pipelining on', transactionPoolerTarget(), { pipelining: true }],
];

describe.each(TARGETS)('tenant settings under load (%s)', (name, target, options) => {
  let f: ServiceFixture;
  let db: DatabaseService;

  beforeAll(async () => {
    await target.setUp();
    f = await target.start({ poolMax: 8, ...options });
    db = f.db;
    await createTenantTable(f.cluster, f.cluster.facts.user, TENANTS, 5);
  });
  afterAll(async () => {
    await f?.close();
    await target.tearDown();
  });

  it(`${CALLERS} concurrent callers across ${TENANTS} tenants, ${OPERATIONS} reads and writes: every row each caller sees or writes is its own tenant's`, async () => {
    const foreign: string[] = [];
    let rowsSeen = 0;
    let written = 0;
    let deepestPipeline = 0;
    const check = (caller: number, tenant: number, rows: TenantRow[]) => {
      rowsSeen += rows.length;
      for (const row of rows) if (row.tenant_id !== tenant) foreign.push(`caller ${caller} (tenant ${tenant}) saw tenant ${row.tenant_id}`);
    };
    const run = async (caller: number) => {
      const tenant = (caller % TENANTS) + 1;
      const settings = settingsOf(tenant);
      for (let k = 0; k < Math.ceil(OPERATIONS / CALLERS); k++) {
        switch (k % 6) {
          case 0:
            check(caller, tenant, await db.fetch<TenantRow>('INSERT INTO tenant_rows (tenant_id, caller) VALUES ($1, $2) RETURNING tenant_id', [tenant, caller], { settings }));
            written++;
            break;
          case 1:
            check(caller, tenant, await db.fetch<TenantRow>('SELECT tenant_id FROM tenant_rows ORDER BY id DESC LIMIT 20', [], { settings }));
            break;
          case 2:
            check(caller, tenant, await db.withSettings(settings, () => db.fetch<TenantRow>(sql`SELECT tenant_id FROM tenant_rows WHERE caller IN (0, ${caller}) ORDER BY id DESC LIMIT 20`)));
            break;
          case 3: {
            const rows = await db.transaction(async (tx) => {
              await tx.execute('INSERT INTO tenant_rows (tenant_id, caller) VALUES ($1, $2)', [tenant, caller]);
              return db.fetch<TenantRow>('SELECT tenant_id FROM tenant_rows ORDER BY id DESC LIMIT 20'); // joins the transaction
            }, { settings });
            written++;
            check(caller, tenant, rows);
            break;
          }
          case 4: {
            const others = await db.fetchval<number>('SELECT count(*)::int FROM tenant_rows WHERE tenant_id <> $1', [tenant], { settings });
            if (others !== 0) foreign.push(`caller ${caller} (tenant ${tenant}) counted ${others} rows of other tenants`);
            break;
          }
          case 5: {
            // No settings: nothing of any tenant, whatever ran on this connection before.
            const visible = await db.fetchval<number>('SELECT count(*)::int FROM tenant_rows');
            if (visible !== 0) foreign.push(`caller ${caller} without settings saw ${visible} rows`);
            break;
          }
        }
        deepestPipeline = Math.max(deepestPipeline, db.stats().pipeline?.depth ?? 0);
      }
    };
    await Promise.all(Array.from({ length: CALLERS }, (_, caller) => run(caller + 1)));

    expect(foreign).toEqual([]);
    expect(rowsSeen).toBeGreaterThan(OPERATIONS); // the reads did return rows: 0 foreign rows is not 0 rows
    const stored = await f.cluster.withSuperuser(
      async (admin) => (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM tenant_rows WHERE caller > 0 AND tenant_id = (caller % $1) + 1', [TENANTS])).rows[0].n,
      f.cluster.facts.database,
    );
    expect(stored).toBe(written);
    // The configuration under test really did what it says.
    // (Behind a transaction pooler the module never pipelines: each statement carries its SET LOCAL timeouts.)
    if (options.pipelining && !name.includes('PgBouncer')) expect(deepestPipeline).toBeGreaterThan(1);
    if (!name.includes('PgBouncer')) expect(await db.fetchval<number>('SELECT count(*)::int FROM pg_catalog.pg_prepared_statements')).toBeGreaterThan(0);
  }, 120_000);
});

/**
 * A statement that tries to escape its tenant, then the next caller on the same server connection
 * (pool of one; behind PgBouncer a pool of one server connection): the backend pid proves it is the
 * same session.
 */
const ESCAPES: Array<[string, string, unknown[]]> = [
  ['SET app.tenant_id', "SET app.tenant_id = '1'", []],
  ["set_config(…, false) (no command tag shows it)", "SELECT set_config('app.tenant_id', '1', false)", []],
  ['set_config with bound arguments', 'SELECT set_config($1, $2, $3)', ['app.tenant_id', '1', false]],
  ['RESET ALL', 'RESET ALL', []],
  ['SET ROLE', 'SET ROLE NONE', []],
  ['a function that sets it for the session (invisible in the text)', "SELECT become_tenant('1')", []],
];

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };

describe.each([
  ['direct, pipelining off', false, false],
  ['direct, pipelining on', true, false],
  ['behind PgBouncer in transaction mode (one server connection), pipelining on', true, true],
])('a statement that tries to escape its tenant (%s)', (_, pipelining, pooled) => {
  let moduleRef: TestingModule;
  let db: DatabaseService;
  let bouncer: Pgbouncer | undefined;
  let drop: (() => Promise<void>) | undefined;

  beforeAll(async () => {
    const scratch = await scratchDatabase(h.tls);
    drop = scratch.drop;
    await createTenantTable(scratch.cluster, scratch.cluster.facts.user, 3, 4);
    if (pooled) bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 1 });
    const url = bouncer ? bouncer.url() : scratch.cluster.url();
    moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url, sslRootCert: h.caPem, appEnv: 'production', poolMax: 1, pipelining, ...(pooled ? { pooler: 'transaction' as const } : {}) })],
    }).compile();
    await moduleRef.init();
    db = moduleRef.get(DatabaseService);
  });
  afterAll(async () => {
    await moduleRef?.close();
    await bouncer?.stop();
    await drop?.();
  });

  const tenantsSeen = (settings?: Record<string, number>) =>
    db.fetch<{ pid: number; tenant_id: number }>('SELECT DISTINCT pg_catalog.pg_backend_pid() AS pid, tenant_id FROM tenant_rows ORDER BY tenant_id', [], settings ? { settings } : {});

  it.each(ESCAPES)('%s: the next caller sees only its own tenant, and a caller without settings none', async (escape, statement, params) => {
    const [{ pid }] = await tenantsSeen(settingsOf(2));
    const sent = db.fetch(statement, params, { settings: settingsOf(2) });
    if (pooled && !escape.startsWith('a function')) {
      // Session statements never reach a pooled server connection.
      await expect(sent).rejects.toBeInstanceOf(SessionUnavailableError);
    } else {
      await sent;
    }
    expect(await tenantsSeen(settingsOf(3))).toEqual([{ pid, tenant_id: 3 }]);
    expect(await tenantsSeen()).toEqual([]);
    expect(await db.fetchval('SELECT count(*)::int FROM tenant_rows')).toBe(0);
    // Still the same server session: it was cleaned, not replaced.
    expect((await tenantsSeen(settingsOf(1)))[0].pid).toBe(pid);
  });
});
