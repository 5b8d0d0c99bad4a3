import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { PoolExhaustedError, ServerRoleMismatchError, ShuttingDownError } from '../errors/connection.errors.js';
import { SessionUnavailableError } from '../errors/pooler.errors.js';
import { QueryCancelledError } from '../errors/cancellation.errors.js';
import { NotFoundError } from '../errors/query.errors.js';
import { StreamIdleTimeoutError } from '../errors/stream.errors.js';
import { toDatabaseError } from '../errors/to-database-error.js';
import { databaseErrorStatus, reasonPhrase } from './database-error-status.js';

// The e2e specs trigger the real errors; this pins the SQLSTATE table (including states a test server
// cannot produce on demand, like 57P03 or 08006) to the statuses the README promises.
function fromSqlstate(code: string) {
  const error = new pg.DatabaseError('server message naming secret_table', 0, 'error');
  error.code = code;
  return databaseErrorStatus(toDatabaseError(error, { verbose: false }));
}

describe('databaseErrorStatus', () => {
  it.each([
    ['23505', 409],
    ['23P01', 409],
    ['23503', 409],
    ['40001', 409],
    ['40P01', 409],
    ['23502', 400],
    ['23514', 400],
    ['22P02', 400],
    ['22001', 400],
    ['22003', 400],
    ['22007', 400],
    ['22008', 400],
    ['22012', 400],
    ['2201B', 400],
    ['57014', 503],
    ['55P03', 503],
    ['28P01', 500],
    ['28000', 500],
    ['42P01', 500],
    ['42501', 500],
    ['42601', 500],
    ['XX000', 500],
    ['53100', 500],
  ])('SQLSTATE %s -> %i without Retry-After', (sqlstate, status) => {
    expect(fromSqlstate(sqlstate)).toEqual({ status, message: expect.any(String) });
  });

  it.each(['53300', '57P01', '57P02', '57P03', '08006', '08001', '25006'])('SQLSTATE %s -> 503 with a small Retry-After', (sqlstate) => {
    const { status, retryAfterSeconds } = fromSqlstate(sqlstate);
    expect(status).toBe(503);
    expect(retryAfterSeconds).toBeGreaterThanOrEqual(1);
    expect(retryAfterSeconds).toBeLessThanOrEqual(5);
  });

  it('pool exhausted, shutting down and connect timeouts ask the client to retry shortly', () => {
    expect(databaseErrorStatus(new PoolExhaustedError('x'))).toMatchObject({ status: 503, retryAfterSeconds: 1 });
    expect(databaseErrorStatus(new ShuttingDownError())).toMatchObject({ status: 503, retryAfterSeconds: 1 });
    expect(databaseErrorStatus({ code: 'DB_CONNECT_TIMEOUT' })).toMatchObject({ status: 503, retryAfterSeconds: 2 });
  });

  it("failover and pooler conditions: a demoted primary or no primary yet retry shortly; a session behind a transaction pooler is the app's setup", () => {
    expect(fromSqlstate('25006')).toEqual({ status: 503, message: 'The database is temporarily unavailable', retryAfterSeconds: 1 });
    expect(databaseErrorStatus(new ServerRoleMismatchError('x'))).toMatchObject({ status: 503, retryAfterSeconds: 2 });
    expect(databaseErrorStatus(new SessionUnavailableError('x'))).toEqual({ status: 500, message: 'An internal error occurred' });
  });

  it('a stream whose reader stalled -> 503 without Retry-After (the same reader would stall again)', () => {
    expect(databaseErrorStatus(new StreamIdleTimeoutError(300))).toEqual({ status: 503, message: 'The result was not read in time; try again' });
  });

  it('a call its caller cancelled (AbortSignal) -> 499 Client Closed Request, without Retry-After, not a 5xx', () => {
    expect(databaseErrorStatus(new QueryCancelledError())).toEqual({ status: 499, message: 'The request was cancelled' });
    expect(reasonPhrase(499 as Parameters<typeof reasonPhrase>[0])).toBe('Client Closed Request');
  });

  it('NotFoundError -> 404', () => {
    expect(databaseErrorStatus(new NotFoundError())).toEqual({ status: 404, message: 'The requested record was not found' });
  });

  it('messages are fixed texts, never the error message', () => {
    expect(fromSqlstate('23505').message).toBe('A record with these values already exists');
    for (const sqlstate of ['23505', '22P02', '42P01', '57P01']) expect(fromSqlstate(sqlstate).message).not.toMatch(/secret|server message/);
  });

  it('gives Nest reason phrases', () => {
    expect([400, 404, 409, 500, 503].map(reasonPhrase)).toEqual(['Bad Request', 'Not Found', 'Conflict', 'Internal Server Error', 'Service Unavailable']);
  });
});
