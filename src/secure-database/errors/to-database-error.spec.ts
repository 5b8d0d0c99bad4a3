import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { toDatabaseError } from './to-database-error.js';

const serverError = (code: string, severity = 'ERROR', message = 'duplicate key value violates unique constraint "users_email_key"') =>
  Object.assign(new pg.DatabaseError(message, 0, 'error'), { code, severity, detail: 'Key (email)=(ada@example.com) already exists.' });

describe('toDatabaseError', () => {
  it.each([
    ['23505', 'DB_UNIQUE_VIOLATION'],
    ['22P02', 'DB_INVALID_INPUT'],
    ['28P01', 'DB_AUTHENTICATION_FAILED'],
    ['08006', 'DB_CONNECTION_FAILED'],
    ['57P01', 'DB_CONNECTION_FAILED'],
    ['57P05', 'DB_CONNECTION_FAILED'], // idle_session_timeout (Neon's idle kill)
    ['53300', 'DB_TOO_MANY_CONNECTIONS'],
    ['42P01', 'DB_QUERY_FAILED'],
  ])('maps SQLSTATE %s to %s', (sqlstate, code) => {
    expect(toDatabaseError(serverError(sqlstate), { verbose: false })).toMatchObject({ code, sqlstate });
  });

  it('keeps the driver error as cause, but its message and detail out of a production message', () => {
    const driver = serverError('23505');
    const mapped = toDatabaseError(driver, { verbose: false });
    expect(mapped.cause).toBe(driver);
    expect(mapped.message).toBe('unique constraint violated (SQLSTATE 23505)');
    expect(toDatabaseError(driver, { verbose: true }).message).toContain('users_email_key');
  });
});
