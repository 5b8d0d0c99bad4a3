import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { type DatabaseErrorReplyContext, type DatabaseExceptionFilterOptions, type SecureDatabaseError, UniqueViolationError } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import type { LogCapture } from '../support/log-capture.js';
import { expectNothingLeaked } from './expect-nothing-leaked.js';
import { createFailingRoutesApp } from './failing-routes-app.js';

const h = harness();

/** The RealWorld (Conduit) answer to a taken email: 422 { errors: { field: [...] } }, chosen by constraint. */
const FIELD_BY_CONSTRAINT: Record<string, string> = { secret_uq_k9: 'email' };
const seen: Array<{ constraint?: string; verbose: boolean; cause: unknown }> = [];
const conduit: DatabaseExceptionFilterOptions = {
  status: (error, { status }) => (error instanceof UniqueViolationError && error.constraint && FIELD_BY_CONSTRAINT[error.constraint] ? 422 : status),
  body: (error: SecureDatabaseError, context: DatabaseErrorReplyContext) => {
    seen.push({ constraint: error.constraint, verbose: context.verbose, cause: error.cause });
    const field = error.constraint ? FIELD_BY_CONSTRAINT[error.constraint] : undefined;
    if (error instanceof UniqueViolationError && field) return { errors: { [field]: ['has already been taken'] } };
    if (error.code === 'DB_CHECK_VIOLATION') throw new Error(`no field for ${error.constraint}`);
    return context.defaultBody;
  },
};

// Production (appEnv on the module): the hooks shape the answer; the request id, Retry-After and
// the log line stay the filter's, and the log names no constraint.
describe.each([
  ['express', 'factory'],
  ['fastify', 'global-options'],
  ['express', 'provider-options'],
] as const)('DatabaseExceptionFilter body/status hooks on %s (%s registration)', (platform, filter) => {
  let app: INestApplication;
  let logs: LogCapture;
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    ({ app, logs } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'production', deps: { admin: h.tls }, platform, filter, filterOptions: conduit }));
  });

  afterAll(async () => {
    await app?.close();
    await scratch?.drop();
  });

  async function call(path: string) {
    logs.clear();
    seen.length = 0;
    const res = await request(app.getHttpServer()).get(path).set('x-request-id', `hook-${platform}`);
    return { res, logged: logs.text() };
  }

  it.each(['raw', 'typed'])('a unique violation on the email constraint -> 422 Conduit body (%s)', async (path) => {
    const { res, logged } = await call(`/fail/statement/${path}/unique`);
    expect(res.status).toBe(422);
    expect(res.body).toEqual({ errors: { email: ['has already been taken'] } });
    expect(res.headers['x-request-id']).toBe(`hook-${platform}`);
    expect(seen).toEqual([{ constraint: 'secret_uq_k9', verbose: false, cause: { code: '23505' } }]);
    expect(logged).toContain(`GET /fail/statement/:path/:name -> 422 DB_UNIQUE_VIOLATION (SQLSTATE 23505) [request hook-${platform}]`);
    expectNothingLeaked(logged);
  });

  it('other errors keep the default body, status and Retry-After', async () => {
    const { res, logged } = await call('/fail/statement/raw/terminated');
    expect(res.status).toBe(503);
    expect(res.body).toEqual({ statusCode: 503, message: 'The database is temporarily unavailable', error: 'Service Unavailable', code: 'DB_CONNECTION_FAILED', sqlstate: '57P01' });
    expect(res.headers['retry-after']).toBe('2');
    expect(res.headers['x-request-id']).toBe(`hook-${platform}`);
    expect(logged).toContain(`-> 503 DB_CONNECTION_FAILED (SQLSTATE 57P01) [request hook-${platform}]`);
  });

  it('a hook that throws gets the default answer, and its message (which quotes a name) stays out of the production log', async () => {
    const { res, logged } = await call('/fail/statement/typed/check');
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ statusCode: 400, code: 'DB_CHECK_VIOLATION' });
    expect(logged).toContain('the status/body hook threw (Error); the default answer was sent');
    expectNothingLeaked(res.text + logged);
  });
});
