import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { resolveDatabaseConfig } from '../../src/secure-database/config/resolve-database-config.js';
import { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { harness, scratchDatabase } from '../support/harness.js';
import type { LogCapture } from '../support/log-capture.js';
import { expectNothingLeaked } from './expect-nothing-leaked.js';
import { createFailingRoutesApp } from './failing-routes-app.js';

const h = harness();

// The key rows of the mapping on Fastify, with the filter registered the other way:
// useGlobalFilters(new DatabaseExceptionFilter(adapterHost)), production by default (APP_ENV unset).
describe('DatabaseExceptionFilter on Fastify, production', () => {
  const savedAppEnv = process.env.APP_ENV;
  let app: INestApplication;
  let logs: LogCapture;
  let small: DatabasePool;
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    delete process.env.APP_ENV;
    scratch = await scratchDatabase(h.tls);
    small = new DatabasePool(resolveDatabaseConfig({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1, acquireTimeoutMs: 200 }));
    ({ app, logs } = await createFailingRoutesApp({
      url: scratch.cluster.url(),
      caPem: h.caPem,
      appEnv: 'production',
      deps: { admin: h.tls, small },
      platform: 'fastify',
      filter: 'global',
    }));
  });

  afterAll(async () => {
    await app?.close();
    await small?.close();
    await scratch?.drop();
    if (savedAppEnv !== undefined) process.env.APP_ENV = savedAppEnv;
  });

  it.each([
    ['statement/raw/unique', 409, 'DB_UNIQUE_VIOLATION', '23505', undefined],
    ['statement/typed/unique', 409, 'DB_UNIQUE_VIOLATION', '23505', undefined],
    ['statement/raw/foreign-key', 409, 'DB_FOREIGN_KEY_VIOLATION', '23503', undefined],
    ['statement/typed/not-null', 400, 'DB_NOT_NULL_VIOLATION', '23502', undefined],
    ['statement/raw/invalid-text', 400, 'DB_INVALID_INPUT', '22P02', undefined],
    ['statement/typed/statement-timeout', 503, 'DB_STATEMENT_TIMEOUT', '57014', undefined],
    ['statement/raw/terminated', 503, 'DB_CONNECTION_FAILED', '57P01', '2'],
    ['statement/typed/undefined-table', 500, 'DB_QUERY_FAILED', undefined, undefined], // a 500 hides its code and SQLSTATE
    ['connection/pool-exhausted', 503, 'DB_POOL_EXHAUSTED', undefined, '1'],
    ['not-found/typed/98765', 404, 'DB_NOT_FOUND', undefined, undefined],
  ])('/fail/%s -> %i %s', async (path, status, code, sqlstate, retryAfter) => {
    logs.clear();
    const res = await request(app.getHttpServer()).get(`/fail/${path}`).set('x-request-id', 'fastify-req-7');
    expect(res.status).toBe(status);
    expect(res.body).toMatchObject({ statusCode: status, code: status === 500 ? 'DB_INTERNAL_ERROR' : code, ...(sqlstate ? { sqlstate } : {}) });
    expect(Object.keys(res.body).sort()).toEqual(['code', 'error', 'message', 'statusCode', ...(sqlstate ? ['sqlstate'] : [])].sort());
    expect(res.headers['retry-after']).toBe(retryAfter);
    expect(res.headers['x-request-id']).toBe('fastify-req-7');
    expectNothingLeaked(res.text);
    expectNothingLeaked(logs.text());
    const pattern = path.startsWith('statement/') ? '/fail/statement/:path/:name' : path.startsWith('connection/') ? '/fail/connection/:name' : '/fail/not-found/:path/:id';
    expect(logs.text()).toContain(`GET ${pattern} -> ${status} ${code}`);
    expect(logs.text()).toContain('[request fastify-req-7]');
  });

  it('leaves non-database exceptions to Nest', async () => {
    const res = await request(app.getHttpServer()).get('/fail/not-database/http');
    expect(res.status).toBe(400);
    expect(res.body).toEqual({ statusCode: 400, message: 'plain http exception', error: 'Bad Request' });
    expect(res.headers['x-request-id']).toBeUndefined();
  });
});
