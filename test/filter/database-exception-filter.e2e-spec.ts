import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { freePort } from '../../src/local-postgres/index.js';
import { resolveDatabaseConfig } from '../../src/secure-database/config/resolve-database-config.js';
import type { SecureDatabaseModuleOptions } from '../../src/secure-database/interfaces/secure-database-options.interface.js';
import { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { TcpFaultProxy, throughProxy } from '../support/tcp-fault-proxy.js';
import type { LogCapture } from '../support/log-capture.js';
import { createFailingRoutesApp } from './failing-routes-app.js';
import { expectNothingLeaked } from './expect-nothing-leaked.js';
import type { FailingRouteDeps } from './failing-routes.js';

const h = harness();

/** [case, SQLSTATE, library code, HTTP status, Retry-After] */
const STATEMENT_ROWS: Array<[string, string, string, number, string | undefined]> = [
  ['unique', '23505', 'DB_UNIQUE_VIOLATION', 409, undefined],
  ['exclusion', '23P01', 'DB_EXCLUSION_VIOLATION', 409, undefined],
  ['foreign-key', '23503', 'DB_FOREIGN_KEY_VIOLATION', 409, undefined],
  ['not-null', '23502', 'DB_NOT_NULL_VIOLATION', 400, undefined],
  ['check', '23514', 'DB_CHECK_VIOLATION', 400, undefined],
  ['invalid-text', '22P02', 'DB_INVALID_INPUT', 400, undefined],
  ['too-long', '22001', 'DB_INVALID_INPUT', 400, undefined],
  ['out-of-range', '22003', 'DB_INVALID_INPUT', 400, undefined],
  ['bad-date', '22007', 'DB_INVALID_INPUT', 400, undefined],
  ['date-overflow', '22008', 'DB_INVALID_INPUT', 400, undefined],
  ['division-by-zero', '22012', 'DB_INVALID_INPUT', 400, undefined],
  ['serialization', '40001', 'DB_SERIALIZATION_FAILURE', 409, undefined],
  ['deadlock', '40P01', 'DB_DEADLOCK', 409, undefined],
  ['statement-timeout', '57014', 'DB_STATEMENT_TIMEOUT', 503, undefined],
  ['lock-timeout', '55P03', 'DB_LOCK_TIMEOUT', 503, undefined],
  ['terminated', '57P01', 'DB_CONNECTION_FAILED', 503, '2'],
  ['undefined-table', '42P01', 'DB_QUERY_FAILED', 500, undefined],
  ['undefined-column', '42703', 'DB_QUERY_FAILED', 500, undefined],
  ['syntax', '42601', 'DB_QUERY_FAILED', 500, undefined],
];

const REASON: Record<number, string> = { 400: 'Bad Request', 404: 'Not Found', 409: 'Conflict', 500: 'Internal Server Error', 503: 'Service Unavailable' };

/** The fixed message a client reads for each code, written out here (not taken from the code under test). */
const MESSAGE: Record<string, string> = {
  DB_UNIQUE_VIOLATION: 'A record with these values already exists',
  DB_EXCLUSION_VIOLATION: 'The record conflicts with an existing record',
  DB_FOREIGN_KEY_VIOLATION: 'The record references, or is referenced by, another record',
  DB_NOT_NULL_VIOLATION: 'A required value is missing',
  DB_CHECK_VIOLATION: 'A value is not allowed',
  DB_INVALID_INPUT: 'A value is not valid',
  DB_SERIALIZATION_FAILURE: 'The operation conflicted with a concurrent one; retry it',
  DB_DEADLOCK: 'The operation conflicted with a concurrent one; retry it',
  DB_NOT_FOUND: 'The requested record was not found',
  DB_STATEMENT_TIMEOUT: 'The database took too long to answer',
  DB_LOCK_TIMEOUT: 'The record is busy; try again later',
  DB_POOL_EXHAUSTED: 'The service is busy; try again later',
  DB_TOO_MANY_CONNECTIONS: 'The service is busy; try again later',
  DB_CONNECTION_FAILED: 'The database is temporarily unavailable',
  DB_CONNECT_TIMEOUT: 'The database is temporarily unavailable',
  DB_SHUTTING_DOWN: 'The service is restarting; try again later',
  DB_QUERY_FAILED: 'An internal error occurred',
  DB_AUTHENTICATION_FAILED: 'An internal error occurred',
};

describe('DatabaseExceptionFilter on Express, production', () => {
  let app: INestApplication;
  let logs: LogCapture;
  let blackhole: TcpFaultProxy;
  const drops: Array<() => Promise<void>> = [];
  const pools: DatabasePool[] = [];

  const pool = (options: SecureDatabaseModuleOptions) => {
    const db = new DatabasePool(resolveDatabaseConfig({ sslRootCert: h.caPem, appEnv: 'production', shutdownTimeoutMs: 1000, ...options }));
    pools.push(db);
    return db;
  };

  beforeAll(async () => {
    const scratch = await scratchDatabase(h.tls);
    const limited = await scratchDatabase(h.tls);
    drops.push(scratch.drop, limited.drop);
    await h.tls.withSuperuser((su) => su.query(`ALTER DATABASE ${limited.cluster.facts.database} CONNECTION LIMIT 1`));
    blackhole = await TcpFaultProxy.start({ host: '127.0.0.1', port: h.tls.facts.port });
    await blackhole.blackhole();
    const closed = pool({ url: scratch.cluster.url() });
    await closed.close();
    const deps: Omit<FailingRouteDeps, 'raw'> = {
      admin: h.tls,
      limited: pool({ url: limited.cluster.url() }),
      wrongPassword: pool({ url: h.tls.url({}, { password: 'secret-wrong-password' }) }),
      small: pool({ url: scratch.cluster.url(), poolMax: 1, acquireTimeoutMs: 200 }),
      refused: pool({ url: `postgresql://app:secret-pw@127.0.0.1:${await freePort()}/secret_db` }),
      blackhole: pool({ url: throughProxy(h.tls, blackhole).url(), connectTimeoutMs: 500 }),
      closed,
    };
    ({ app, logs } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'production', deps }));
  });

  afterAll(async () => {
    await app?.close();
    await Promise.all(pools.map((db) => db.close()));
    await blackhole?.close();
    for (const drop of drops) await drop();
  });

  /** GETs `path` with a fixed request id and returns the response and what was logged meanwhile. */
  async function call(path: string, requestId = 'req-fixed-1') {
    logs.clear();
    const res = await request(app.getHttpServer()).get(path).set('x-request-id', requestId);
    return { res, logged: logs.text() };
  }

  function expectSanitizedAnswer(
    res: request.Response,
    logged: string,
    expected: { status: number; code: string; sqlstate?: string; retryAfter?: string; route: string },
  ): void {
    expect(res.status).toBe(expected.status);
    // A 500 tells the client nothing about which server-side fault it was; the log has the details.
    const hidden = expected.status === 500;
    expect(res.body).toEqual({
      statusCode: expected.status,
      message: MESSAGE[expected.code],
      error: REASON[expected.status],
      code: hidden ? 'DB_INTERNAL_ERROR' : expected.code,
      ...(expected.sqlstate && !hidden ? { sqlstate: expected.sqlstate } : {}),
    });
    expect(res.headers['retry-after']).toBe(expected.retryAfter);
    expect(res.headers['x-request-id']).toBe('req-fixed-1');
    expectNothingLeaked(res.text);
    expectNothingLeaked(logged);
    // The log line an operator searches for: method + route pattern, code, SQLSTATE, request id.
    expect(logged).toContain(`GET ${expected.route} -> ${expected.status} ${expected.code}`);
    if (expected.sqlstate) expect(logged).toContain(`SQLSTATE ${expected.sqlstate}`);
    expect(logged).toContain('[request req-fixed-1]');
  }

  describe.each(['raw', 'typed'])('statement errors through the %s path', (path) => {
    it.each(STATEMENT_ROWS)('%s: SQLSTATE %s -> %s %i', async (name, sqlstate, code, status, retryAfter) => {
      const { res, logged } = await call(`/fail/statement/${path}/${name}`);
      expectSanitizedAnswer(res, logged, { status, code, sqlstate, retryAfter, route: '/fail/statement/:path/:name' });
    });
  });

  describe.each(['raw', 'typed'])('connect-time server errors through the %s path', (path) => {
    it('53300 (no connection slot for the database) -> 503 with Retry-After', async () => {
      const { res, logged } = await call(`/fail/connect/${path}/too-many`);
      expectSanitizedAnswer(res, logged, { status: 503, code: 'DB_TOO_MANY_CONNECTIONS', sqlstate: '53300', retryAfter: '2', route: '/fail/connect/:path/:name' });
    });

    it('28P01 (wrong password) -> 500 naming neither the user nor the cause', async () => {
      const { res, logged } = await call(`/fail/connect/${path}/wrong-password`);
      expectSanitizedAnswer(res, logged, { status: 500, code: 'DB_AUTHENTICATION_FAILED', sqlstate: '28P01', route: '/fail/connect/:path/:name' });
      expectNothingLeaked(res.text + logged, ['password authentication', 'user "app"']);
    });
  });

  it.each([
    ['pool-exhausted', 'DB_POOL_EXHAUSTED', '1'],
    ['refused', 'DB_CONNECTION_FAILED', '2'],
    ['connect-timeout', 'DB_CONNECT_TIMEOUT', '2'],
    ['shutting-down', 'DB_SHUTTING_DOWN', '1'],
  ])('%s -> 503 %s with Retry-After %s, no host or port', async (name, code, retryAfter) => {
    const { res, logged } = await call(`/fail/connection/${name}`);
    expectSanitizedAnswer(res, logged, { status: 503, code, retryAfter, route: '/fail/connection/:name' });
    expectNothingLeaked(res.text + logged, ['127.0.0.1', String(blackhole.port), 'ECONNREFUSED']);
  });

  it.each(['raw', 'typed'])('NotFoundError -> 404, logged with the route pattern, not the id (%s)', async (path) => {
    const { res, logged } = await call(`/fail/not-found/${path}/98765`);
    expectSanitizedAnswer(res, logged, { status: 404, code: 'DB_NOT_FOUND', route: '/fail/not-found/:path/:id' });
  });

  it('a row that exists is returned: the routes fail only where meant to', async () => {
    const res = await request(app.getHttpServer()).get('/fail/not-found/typed/1');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ secret_col_q3: 'secret-row-one' });
  });

  it('leaves non-database exceptions to Nest: HttpException body and no request id header', async () => {
    const res = await request(app.getHttpServer()).get('/fail/not-database/http');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ statusCode: 400, message: 'plain http exception', error: 'Bad Request' });
    expect(res.headers['x-request-id']).toBeUndefined();
  });

  it('leaves plain errors to Nest: its generic 500', async () => {
    const res = await request(app.getHttpServer()).get('/fail/not-database/plain');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ statusCode: 500, message: 'Internal server error' });
    expect(res.headers['x-request-id']).toBeUndefined();
  });

  it('generates a request id when none (or an unsafe one) is sent, echoes it and logs it', async () => {
    for (const sent of [undefined, 'has spaces and "quotes"', 'x'.repeat(200)]) {
      logs.clear();
      const req = request(app.getHttpServer()).get('/fail/statement/typed/unique');
      const res = await (sent === undefined ? req : req.set('x-request-id', sent));
      const id = res.headers['x-request-id'];
      expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(logs.text()).toContain(`[request ${id}]`);
      if (sent) expect(logs.text()).not.toContain(sent);
    }
  });
});
