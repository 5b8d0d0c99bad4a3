import { describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { ConnectionError, PoolExhaustedError, ShuttingDownError } from '../errors/connection.errors.js';
import { toDatabaseError } from '../errors/to-database-error.js';
import { downReason } from './database-health-reason.js';

describe('downReason', () => {
  it('names the cause of a connection failure in fixed words', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 10.1.2.3:5432'), { code: 'ECONNREFUSED' });
    expect(downReason(toDatabaseError(refused, { verbose: true }))).toBe('connection refused');
    const startingUp = Object.assign(new pg.DatabaseError('the database system is starting up', 0, 'error'), { code: '57P03' });
    expect(downReason(toDatabaseError(startingUp, { verbose: true }))).toBe('server starting up or shutting down');
    expect(downReason(toDatabaseError(new Error('Connection terminated unexpectedly'), { verbose: true }))).toBe('connection lost');
    expect(downReason(new ConnectionError('x'))).toBe('connection lost');
  });

  it('uses the library code for the rest', () => {
    expect(downReason(new PoolExhaustedError('x'))).toBe('pool exhausted');
    expect(downReason(new ShuttingDownError())).toBe('shutting down');
    const auth = Object.assign(new pg.DatabaseError('password authentication failed for user "app"', 0, 'error'), { code: '28P01' });
    expect(downReason(toDatabaseError(auth, { verbose: true }))).toBe('authentication failed');
  });
});
