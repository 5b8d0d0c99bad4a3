import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { metrics } from '@opentelemetry/api';
import { Test, type TestingModule } from '@nestjs/testing';
import { DatabaseService, type QueryEvent, SecureDatabaseModule, getDatabaseServiceToken, sql } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type ReplicationPair, startReplicationPair } from '../support/replication-pair.js';
import { MetricsProbe, total } from './metrics-probe.js';

const POOL = 'db.client.connection.pool.name';

describe('metrics of two named connections and a read replica', () => {
  let pair: ReplicationPair;
  let moduleRef: TestingModule;
  const probe = new MetricsProbe();
  const events: QueryEvent[] = [];

  beforeAll(async () => {
    pair = await startReplicationPair();
    const common = { sslRootCert: pair.caPem, appEnv: 'production' as const, meterProvider: probe.provider, onQuery: (event: QueryEvent) => events.push(event) };
    moduleRef = await Test.createTestingModule({
      imports: [
        SecureDatabaseModule.forRoot({ ...common, url: pair.primary.url(), poolMax: 2 }),
        SecureDatabaseModule.forRoot({ ...common, name: 'analytics', url: pair.primary.url(), poolMax: 3 }),
        SecureDatabaseModule.forRoot({ ...common, name: 'replica', url: pair.standby.url(), readOnly: true, poolMax: 4 }),
      ],
    }).compile();
    await moduleRef.init();
  }, 60_000);

  afterAll(async () => {
    await moduleRef?.close();
    await probe.shutdown();
    await pair?.stop();
  });

  it('each reports under its own db.client.connection.pool.name, with its own numbers', async () => {
    const services = {
      default: moduleRef.get(DatabaseService),
      analytics: moduleRef.get<DatabaseService>(getDatabaseServiceToken('analytics')),
      replica: moduleRef.get<DatabaseService>(getDatabaseServiceToken('replica')),
    };
    const workload = { default: 2, analytics: 3, replica: 5 };
    for (const [name, count] of Object.entries(workload)) {
      for (let i = 0; i < count; i++) await services[name as keyof typeof services].fetchval(sql`SELECT ${i}::int`);
    }
    const points = await probe.points();
    for (const [name, count] of Object.entries(workload)) {
      const pool = moduleRef.get<DatabasePool>(getDatabasePoolToken(name === 'default' ? undefined : name));
      const stats = pool.stats();
      expect(total(points, 'db.client.operation.duration', { [POOL]: name })).toBe(count);
      expect(total(points, 'db.client.connection.max', { [POOL]: name })).toBe(pool.config.pool.max);
      expect(total(points, 'db.client.connection.count', { [POOL]: name, 'db.client.connection.state': 'idle' })).toBe(stats.idle);
      expect(total(points, 'db.client.connection.count', { [POOL]: name })).toBe(stats.total);
      expect(total(points, 'secure_postgres.tls.assertions', { [POOL]: name, 'secure_postgres.tls.assertion.outcome': 'passed' })).toBe(stats.tlsAssertionsPassed);
      expect(events.filter((e) => e.connection === name)).toHaveLength(count);
    }
    expect(new Set(points.filter((p) => p.name === 'db.client.connection.max').map((p) => p.attributes[POOL]))).toEqual(new Set(['default', 'analytics', 'replica']));
    expect(events.filter((e) => e.replica).map((e) => e.connection)).toEqual(Array(5).fill('replica'));
  });
});

describe('which meter provider', () => {
  const h = harness();

  async function start(options: object): Promise<{ moduleRef: TestingModule; db: DatabaseService; pool: DatabasePool; drop(): Promise<void> }> {
    const scratch = await scratchDatabase(h.tls);
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', ...options })],
    }).compile();
    await moduleRef.init();
    return { moduleRef, db: moduleRef.get(DatabaseService), pool: moduleRef.get<DatabasePool>(getDatabasePoolToken()), drop: () => scratch.drop() };
  }

  it('without a hook, a slow-query threshold or a meter provider, nothing observes: the statement path reads one undefined property', async () => {
    const started = await start({});
    try {
      expect(started.pool.observer).toBeUndefined();
      expect(await started.db.fetchval(sql`SELECT ${1}::int`)).toBe(1);
    } finally {
      await started.moduleRef.close();
      await started.drop();
    }
  });

  it('uses the global meter provider the app registered, unless DATABASE_METRICS is off', async () => {
    const probe = new MetricsProbe();
    metrics.setGlobalMeterProvider(probe.provider);
    try {
      const on = await start({});
      try {
        await on.db.fetchval(sql`SELECT ${1}::int`);
        expect(total(await probe.points(), 'db.client.operation.duration', { [POOL]: 'default' })).toBe(1);
      } finally {
        await on.moduleRef.close();
        await on.drop();
      }
      const off = await start({ metrics: 'off' });
      try {
        expect(off.pool.observer).toBeUndefined();
      } finally {
        await off.moduleRef.close();
        await off.drop();
      }
    } finally {
      metrics.disable();
      await probe.shutdown();
    }
  });
});
