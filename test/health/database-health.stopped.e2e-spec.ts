import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { DatabaseHealthIndicator } from '../../src/secure-database/health/database.health.js';
import { type PrivateCluster, startPrivateCluster } from '../support/private-cluster.js';
import { createHealthApp } from './health-app.js';

const TIMEOUT_MS = 1000;

// A private cluster: stopping a shared one would break every other spec running in parallel.
describe('DatabaseHealthIndicator against a stopped server', () => {
  let local: PrivateCluster;
  let cluster: LocalPostgresCluster;
  let app: INestApplication;
  let indicator: DatabaseHealthIndicator;

  beforeAll(async () => {
    local = await startPrivateCluster();
    cluster = local.cluster;
    ({ app } = await createHealthApp([{ url: cluster.url(), sslRootCert: local.caPem, appEnv: 'production', shutdownTimeoutMs: 1000 }]));
    indicator = app.get(DatabaseHealthIndicator);
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await local?.stop();
  });

  async function timedPing() {
    const started = performance.now();
    const result = await indicator.pingCheck('db', { timeoutMs: TIMEOUT_MS });
    expect(performance.now() - started).toBeLessThan(TIMEOUT_MS + 500);
    const text = JSON.stringify(result);
    for (const secret of [cluster.facts.password, '127.0.0.1', String(cluster.facts.port), 'ECONNREFUSED']) expect(text).not.toContain(secret);
    return result.db;
  }

  it('is up, then down within its timeout once the server stops, then up again when it is back', async () => {
    expect(await timedPing()).toMatchObject({ status: 'up', tls: true });

    await cluster.stop('fast');
    // The pooled connection the server closed may be found first ("connection lost"); a new one is refused.
    expect(['connection refused', 'connection lost', 'connection terminated by the server']).toContain((await timedPing()).message);
    expect(await timedPing()).toMatchObject({ status: 'down', message: 'connection refused', code: 'DB_CONNECTION_FAILED' });

    await cluster.start();
    expect(await timedPing()).toMatchObject({ status: 'up', tls: true, serverIdentityVerified: true });
  }, 60_000);
});
