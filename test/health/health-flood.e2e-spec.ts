import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { DatabaseService } from '../../src/index.js';
import { DatabaseHealthIndicator } from '../../src/secure-database/health/database.health.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness } from '../support/harness.js';
import { createHealthApp } from './health-app.js';

const h = harness();
const CHECKS = 50;
const TIMEOUT_MS = 300;

describe('a flood of readiness checks while the pool is saturated (TLS cluster, pool max 1)', () => {
  let app: INestApplication;
  let indicator: DatabaseHealthIndicator;
  let db: DatabaseService;
  let pool: DatabasePool;

  beforeAll(async () => {
    // A long acquire timeout: an acquire left behind by a check would stay queued for all of it.
    ({ app } = await createHealthApp([{ url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1, acquireTimeoutMs: 20_000 }]));
    indicator = app.get(DatabaseHealthIndicator);
    db = app.get(DatabaseService);
    pool = app.get<DatabasePool>(getDatabasePoolToken());
  });

  afterAll(() => app?.close());

  /** Holds the pool's only connection in a transaction until `release()`. */
  async function holdTheConnection(): Promise<{ release(): void; done: Promise<void> }> {
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let entered!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const done = db.transaction(async (tx) => {
      await tx.fetchval('SELECT 1');
      entered();
      await gate;
    });
    await inside;
    return { release, done };
  }

  const flood = () => Promise.all(Array.from({ length: CHECKS }, () => indicator.pingCheck('db', { timeoutMs: TIMEOUT_MS })));

  it('each check answers "pool exhausted" in time, and they leave at most one acquire queued, not one each', async () => {
    const held = await holdTheConnection();
    const started = performance.now();
    const first = await flood();
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 1000);
    expect(new Set(first.map((r) => JSON.stringify({ status: r.db.status, message: r.db.message })))).toEqual(
      new Set([JSON.stringify({ status: 'down', message: 'pool exhausted' })]),
    );
    expect(pool.stats().waiting).toBeLessThanOrEqual(1);

    // Another wave while the first one's acquire is still queued: it joins, it does not add to it.
    await flood();
    expect(pool.stats().waiting).toBeLessThanOrEqual(1);

    // Real work queued now is served as soon as the connection frees; what the checks left behind is
    // handed straight back on the way (no stale pings), so nothing is in flight or queued after it.
    const work = db.fetchval<number>('SELECT 42');
    held.release();
    await held.done;
    expect(await work).toBe(42);
    expect({ waiting: pool.stats().waiting, inFlight: pool.stats().inFlight }).toEqual({ waiting: 0, inFlight: 0 });
    expect((await indicator.pingCheck('db', { timeoutMs: TIMEOUT_MS })).db).toMatchObject({ status: 'up' });
  });
});
