import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { resolveDatabaseConfig } from '../../src/secure-database/config/resolve-database-config.js';
import { DatabaseHealthIndicator } from '../../src/secure-database/health/database.health.js';
import { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness } from '../support/harness.js';
import { TcpFaultProxy, throughProxy } from '../support/tcp-fault-proxy.js';
import { createHealthApp } from './health-app.js';

const h = harness();
const TIMEOUT_MS = 500;
/** Generous: the check must answer within its timeout plus scheduling slack, whatever the database does. */
const DEADLINE_MS = TIMEOUT_MS + 500;

async function eventually(condition: () => boolean, withinMs = 5000): Promise<void> {
  const until = Date.now() + withinMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('DatabaseHealthIndicator', () => {
  let app: INestApplication;
  let indicator: DatabaseHealthIndicator;
  /** Accepts TCP and never forwards a byte. */
  let blackhole: TcpFaultProxy;
  /** Forwards to the TLS cluster until told to blackhole. */
  let proxy: TcpFaultProxy;
  let unreachable: DatabasePool;
  let closed: DatabasePool;

  const direct = (url: string, connectTimeoutMs = 5000) =>
    new DatabasePool(resolveDatabaseConfig({ url, sslRootCert: h.caPem, appEnv: 'production', connectTimeoutMs, shutdownTimeoutMs: 500 }));

  beforeAll(async () => {
    const target = { host: '127.0.0.1', port: h.tls.facts.port };
    blackhole = await TcpFaultProxy.start(target);
    await blackhole.blackhole();
    proxy = await TcpFaultProxy.start(target);
    // Built without the module: its startup connection would (rightly) refuse to start against a blackhole.
    unreachable = direct(throughProxy(h.tls, blackhole).url());
    closed = direct(h.tls.url());
    await closed.close();
    ({ app } = await createHealthApp(
      [
        { url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'production' },
        { name: 'chainOnly', url: h.tls.url({ sslmode: 'verify-ca' }), sslRootCert: h.caPem, appEnv: 'production' },
        { name: 'development', url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'development' },
        { name: 'held', url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 2 },
        { name: 'proxied', url: throughProxy(h.tls, proxy).url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1 },
      ],
      [
        { provide: getDatabasePoolToken('blackhole'), useValue: unreachable },
        { provide: getDatabasePoolToken('closed'), useValue: closed },
      ],
    ));
    indicator = app.get(DatabaseHealthIndicator);
  });

  afterAll(async () => {
    await app?.close();
    await blackhole?.close(); // resets the pending connects, so the pool can drain
    await unreachable?.close();
    await proxy?.close();
  });

  /** Runs a ping and checks it answered within the deadline. */
  async function timedPing(connection?: string) {
    const started = performance.now();
    const result = await indicator.pingCheck('db', { connection, timeoutMs: TIMEOUT_MS });
    const elapsed = performance.now() - started;
    expect(elapsed).toBeLessThan(DEADLINE_MS);
    const text = JSON.stringify(result);
    for (const secret of [h.tls.facts.password, '127.0.0.1', String(h.tls.facts.port), String(blackhole.port), 'Error', '    at ']) {
      expect(text).not.toContain(secret);
    }
    return result.db;
  }

  it('is up on the TLS cluster and reports the TLS facts, server version, pool and latency', async () => {
    const res = await request(app.getHttpServer()).get('/health/ready');
    expect(res.status).toBe(200);
    expect(res.body.status).toBe('ok');
    expect(res.body.info.database).toEqual({
      status: 'up',
      tls: true,
      tlsProtocol: expect.stringMatching(/^TLSv1\.[23]$/),
      sslmode: 'verify-full',
      serverIdentityVerified: true,
      certificateDaysLeft: expect.any(Number), // the harness certificates last a year; test/doctor checks the value
      role: 'primary',
      serverVersion: expect.stringMatching(/^\d+$/), // the major alone: health endpoints are often public
      latencyMs: expect.any(Number),
      // pipelineDepth: reads share busy connections by default (DATABASE_PIPELINING=reads).
      pool: { total: expect.any(Number), idle: expect.any(Number), waiting: 0, pipelineDepth: 0 },
    });
    expect(res.body.info.database.pool.total).toBeGreaterThanOrEqual(1);
  });

  it('reports the exact server version in development only', async () => {
    const { rows } = await h.tls.withSuperuser((admin) => admin.query<{ server_version: string }>('SHOW server_version'));
    expect(rows[0].server_version).toMatch(/^\d+\.\d+/);
    expect(await timedPing('development')).toMatchObject({ status: 'up', serverVersion: rows[0].server_version });
  });

  it('liveness answers without the database', async () => {
    const res = await request(app.getHttpServer()).get('/health/live');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok', info: {}, error: {}, details: {} });
  });

  it('checks a named connection, and says when the server identity was not verified (verify-ca)', async () => {
    const result = await timedPing('chainOnly');
    expect(result).toMatchObject({ status: 'up', tls: true, sslmode: 'verify-ca', serverIdentityVerified: false });
  });

  it('is down for a connection name that is not registered', async () => {
    expect(await timedPing('nope')).toEqual({ status: 'down', message: 'connection not registered' });
  });

  it('is down with "shutting down" once the pool drains', async () => {
    expect(await timedPing('closed')).toMatchObject({ status: 'down', message: 'shutting down', code: 'DB_SHUTTING_DOWN' });
  });

  it('answers within its timeout when a listener accepts TCP and never answers, and readiness turns 503', async () => {
    const acceptedBefore = blackhole.accepted;
    expect(await timedPing('blackhole')).toMatchObject({ status: 'down', message: 'timeout' });
    expect(blackhole.accepted).toBeGreaterThan(acceptedBefore);

    const started = performance.now();
    const res = await request(app.getHttpServer()).get('/health/ready?connection=blackhole');
    expect(performance.now() - started).toBeLessThan(1000 + 500);
    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({ status: 'error', error: { database: { status: 'down', message: 'timeout' } } });
  });

  it('does not wait for a slot when every one is held by slow queries, and releases the late one', async () => {
    const held = app.get<DatabasePool>(getDatabasePoolToken('held'));
    const sleepers = [1, 2].map(() => held.withClient((c) => c.query('SELECT pg_sleep(1.5)')));
    await eventually(() => held.stats().total === 2 && held.stats().idle === 0 && held.stats().waiting === 0);

    const result = await timedPing('held');
    expect(result).toMatchObject({ status: 'down', message: 'pool exhausted', pool: { total: 2, idle: 0 } });

    // The ping's acquire is still queued; when a sleeper finishes it gets the client and must hand it back.
    await Promise.all(sleepers);
    await eventually(() => held.stats().inFlight === 0 && held.stats().waiting === 0);
    expect(held.stats().idle).toBe(held.stats().total);
    expect(await timedPing('held')).toMatchObject({ status: 'up' });
  });

  it('destroys a connection whose ping the network swallowed, and recovers when the path comes back', async () => {
    const proxied = app.get<DatabasePool>(getDatabasePoolToken('proxied'));
    expect(await timedPing('proxied')).toMatchObject({ status: 'up' });

    await proxy.blackhole(); // under the open, pooled connection
    expect(await timedPing('proxied')).toMatchObject({ status: 'down', message: 'timeout' });
    // Neither handed back with the ping still pending on it nor holding its slot until a client-side timeout.
    await eventually(() => proxied.stats().total === 0 && proxied.stats().inFlight === 0, 1000);

    await proxy.pass();
    expect(await timedPing('proxied')).toMatchObject({ status: 'up', tls: true });
  });
});
