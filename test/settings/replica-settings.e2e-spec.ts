import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Test, type TestingModule } from '@nestjs/testing';
import { DatabaseService, SecureDatabaseModule, getDatabaseServiceToken } from '../../src/index.js';
import { waitForReplay } from '../../src/local-postgres/index.js';
import { type ReplicationPair, startReplicationPair } from '../support/replication-pair.js';
import { createTenantTable } from './tenant-table.js';

/** Settings on a replica connection (readOnly, a streaming standby): the same policies, the same isolation. */
describe('tenant settings on a read replica (pipelining on, statement cache on)', () => {
  let pair: ReplicationPair;
  let moduleRef: TestingModule;
  let primary: DatabaseService;
  let replica: DatabaseService;

  beforeAll(async () => {
    pair = await startReplicationPair();
    await createTenantTable(pair.primary, pair.primary.facts.user, 3, 2);
    await waitForReplay(pair.primary, pair.standby);
    const common = { sslRootCert: pair.caPem, appEnv: 'production' as const, pipelining: true, poolMax: 2 };
    moduleRef = await Test.createTestingModule({
      imports: [
        SecureDatabaseModule.forRoot({ url: pair.primary.url(), ...common }),
        SecureDatabaseModule.forRoot({ name: 'replica', url: pair.standby.url(), readOnly: true, ...common }),
      ],
    }).compile();
    await moduleRef.init();
    primary = moduleRef.get(DatabaseService);
    replica = moduleRef.get(getDatabaseServiceToken('replica'));
  });
  afterAll(async () => {
    await moduleRef?.close();
    await pair?.stop();
  });

  const tenants = (db: DatabaseService, settings?: Record<string, number>) =>
    db.fetch<{ tenant_id: number }>('SELECT tenant_id FROM tenant_rows ORDER BY id', [], settings ? { settings } : {}).then((rows) => rows.map((r) => r.tenant_id));

  it('a replica read with settings sees its tenant only; without, none; withSettings covers primary and replica alike', async () => {
    expect(await replica.fetchval('SELECT pg_catalog.pg_is_in_recovery()')).toBe(true);
    expect(await Promise.all([1, 2, 3, 1, 2, 3].map((tenant) => tenants(replica, { 'app.tenant_id': tenant })))).toEqual([
      [1, 1],
      [2, 2],
      [3, 3],
      [1, 1],
      [2, 2],
      [3, 3],
    ]);
    expect(await tenants(replica)).toEqual([]);
    const both = await primary.withSettings({ 'app.tenant_id': 2 }, async () => ({ primary: await tenants(primary), replica: await tenants(replica) }));
    expect(both).toEqual({ primary: [2, 2], replica: [2, 2] });
    expect(await tenants(replica)).toEqual([]);
  });
});
