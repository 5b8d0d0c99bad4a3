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

  it('in production keeps only the driver code as cause, and the message and detail out of the error', () => {
    const driver = serverError('23505');
    const mapped = toDatabaseError(driver, { verbose: false });
    expect(mapped.cause).toEqual({ code: '23505' });
    expect(mapped.message).toBe('unique constraint violated (SQLSTATE 23505)');
    expect(JSON.stringify(mapped, Object.getOwnPropertyNames(mapped))).not.toMatch(/users_email_key|ada@example\.com/);
  });

  it('in development keeps the driver error as cause and its message in the error', () => {
    const driver = serverError('23505');
    const mapped = toDatabaseError(driver, { verbose: true });
    expect(mapped.cause).toBe(driver);
    expect(mapped.message).toContain('users_email_key');
  });

  it.each(['CA_MD_TOO_WEAK', 'UNSPECIFIED', 'EE_KEY_TOO_SMALL', 'CERT_REVOKED'])('the certificate verification code %s is a TLS verification failure (never retried)', (code) => {
    const mapped = toDatabaseError(Object.assign(new Error('certificate verify failed'), { code }), { verbose: false });
    expect(mapped).toMatchObject({ code: 'DB_TLS_VERIFICATION_FAILED', cause: { code } });
  });

  it('a reset before the TLS session was established says so (startup reads it as "no direct TLS"); any other reset does not', () => {
    const handshake = Object.assign(new Error('Client network socket disconnected before secure TLS connection was established'), { code: 'ECONNRESET', host: 'db.internal' });
    const mapped = toDatabaseError(handshake, { verbose: false });
    expect({ name: mapped.name, message: mapped.message, cause: mapped.cause }).toEqual({ name: 'ConnectionError', message: 'connection reset during the TLS handshake', cause: { code: 'ECONNRESET' } });
    const later = toDatabaseError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), { verbose: false });
    expect(later.message).toBe('connection reset');
  });

  it('a TLS failure keeps its code, never the certificate (names, fingerprints) that Node attaches', () => {
    const tls = Object.assign(new Error("Hostname/IP does not match certificate's altnames: DNS:db.secret-host.test"), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      cert: { subject: { CN: 'db.secret-host.test' }, fingerprint256: 'AA:BB' },
    });
    const mapped = toDatabaseError(tls, { verbose: false });
    expect(mapped).toMatchObject({ code: 'DB_TLS_VERIFICATION_FAILED', cause: { code: 'ERR_TLS_CERT_ALTNAME_INVALID' } });
    expect(JSON.stringify({ message: mapped.message, cause: mapped.cause })).not.toMatch(/secret-host|AA:BB/);
  });
});
