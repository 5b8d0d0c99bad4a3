import { HttpStatus } from '@nestjs/common';
import type { DatabaseErrorCode, SecureDatabaseError } from '../errors/secure-database.error.js';

/** What an HTTP client is told about a database error: never anything taken from the error itself. */
export interface DatabaseErrorResponse {
  status: HttpStatus;
  /** Fixed text per library code. */
  message: string;
  /** Seconds for the Retry-After header, on 503s a client may simply retry. */
  retryAfterSeconds?: number;
}

const conflict = (message: string): DatabaseErrorResponse => ({ status: HttpStatus.CONFLICT, message });
const badRequest = (message: string): DatabaseErrorResponse => ({ status: HttpStatus.BAD_REQUEST, message });
const unavailable = (message: string, retryAfterSeconds?: number): DatabaseErrorResponse => ({
  status: HttpStatus.SERVICE_UNAVAILABLE,
  message,
  ...(retryAfterSeconds === undefined ? {} : { retryAfterSeconds }),
});
/**
 * 499 Client Closed Request (nginx's code; no standard one exists): a call is cancelled almost always
 * because the HTTP client went away (@RequestSignal), so nobody reads the answer. Not a 5xx (no server
 * fault: alerts on server errors must not fire each time a user closes a tab) and not a 4xx the client
 * could act on; a distinct code keeps these apart from real failures in access logs and metrics.
 */
const CLIENT_CLOSED_REQUEST = 499 as HttpStatus;

const internal: DatabaseErrorResponse = { status: HttpStatus.INTERNAL_SERVER_ERROR, message: 'An internal error occurred' };

// Keyed by the library code (toDatabaseError already sorted the SQLSTATEs into codes); the Record type
// makes a new code a compile error here until someone decides what clients see for it.
// Server misconfiguration (authentication, TLS, missing tables: 28xxx, 42xxx, …) is a 500 on purpose:
// the client can do nothing about it and must not learn which of them it was from the status.
const BY_CODE: Record<DatabaseErrorCode, DatabaseErrorResponse> = {
  DB_UNIQUE_VIOLATION: conflict('A record with these values already exists'),
  DB_EXCLUSION_VIOLATION: conflict('The record conflicts with an existing record'),
  DB_FOREIGN_KEY_VIOLATION: conflict('The record references, or is referenced by, another record'),
  DB_SERIALIZATION_FAILURE: conflict('The operation conflicted with a concurrent one; retry it'),
  DB_DEADLOCK: conflict('The operation conflicted with a concurrent one; retry it'),
  DB_NOT_NULL_VIOLATION: badRequest('A required value is missing'),
  DB_CHECK_VIOLATION: badRequest('A value is not allowed'),
  DB_INVALID_INPUT: badRequest('A value is not valid'),
  DB_NOT_FOUND: { status: HttpStatus.NOT_FOUND, message: 'The requested record was not found' },
  DB_STATEMENT_TIMEOUT: unavailable('The database took too long to answer'),
  DB_LOCK_TIMEOUT: unavailable('The record is busy; try again later'),
  // A stream whose reader stalled (usually a slow HTTP client): freed on purpose, not the database's fault.
  DB_STREAM_IDLE_TIMEOUT: unavailable('The result was not read in time; try again'),
  // The caller's AbortSignal (usually: the HTTP client disconnected): see CLIENT_CLOSED_REQUEST.
  DB_QUERY_CANCELLED: { status: CLIENT_CLOSED_REQUEST, message: 'The request was cancelled' },
  DB_POOL_EXHAUSTED: unavailable('The service is busy; try again later', 1),
  DB_TOO_MANY_CONNECTIONS: unavailable('The service is busy; try again later', 2),
  DB_CONNECTION_FAILED: unavailable('The database is temporarily unavailable', 2),
  DB_CONNECT_TIMEOUT: unavailable('The database is temporarily unavailable', 2),
  DB_SHUTTING_DOWN: unavailable('The service is restarting; try again later', 1),
  // A failover: the write reached the demoted primary (its connection is evicted) or no primary is up yet.
  DB_READ_ONLY: unavailable('The database is temporarily unavailable', 1),
  DB_SERVER_ROLE_MISMATCH: unavailable('The database is temporarily unavailable', 2),
  DB_AUTHENTICATION_FAILED: internal,
  DB_SSL_NOT_ACTIVE: internal,
  DB_TLS_VERIFICATION_FAILED: internal,
  DB_CONFIGURATION: internal,
  DB_QUERY_FAILED: internal,
  DB_INVALID_QUERY: internal,
  // withConnection/LISTEN behind a transaction pooler without DATABASE_DIRECT_URL: the app's setup.
  DB_SESSION_UNAVAILABLE: internal,
  DB_TOO_MANY_ROWS: internal,
  // A statement after a failed one in the same transaction: the app's control flow, not the client's.
  DB_IN_FAILED_TRANSACTION: internal,
  // DATABASE_INT8=number met a value a number cannot hold: the app's configuration.
  DB_INT8_OUT_OF_RANGE: internal,
  // Two columns of a query in the app map to one key: the app's SQL.
  DB_ROW_CASE_COLLISION: internal,
  // An unbounded query in the app: the server's fault, not the client's.
  DB_RESULT_TOO_LARGE: internal,
  // The database returned what the code does not expect: the app's (or its migrations') fault.
  DB_ROW_INVALID: internal,
};

/**
 * The HTTP answer for a database error: 409 conflicts (unique, exclusion, foreign key, serialization,
 * deadlock), 400 bad values (not null, check, class 22), 404 not found, 503 timeouts and locks, 503
 * with Retry-After when the database or the pool is unavailable, 499 for a call its caller cancelled
 * (AbortSignal), 500 for everything else.
 */
export function databaseErrorStatus(error: Pick<SecureDatabaseError, 'code'>): DatabaseErrorResponse {
  return BY_CODE[error.code] ?? internal;
}

const REASON_PHRASES: Partial<Record<HttpStatus, string>> = {
  [HttpStatus.BAD_REQUEST]: 'Bad Request',
  [HttpStatus.NOT_FOUND]: 'Not Found',
  [HttpStatus.CONFLICT]: 'Conflict',
  [HttpStatus.INTERNAL_SERVER_ERROR]: 'Internal Server Error',
  [HttpStatus.SERVICE_UNAVAILABLE]: 'Service Unavailable',
  [CLIENT_CLOSED_REQUEST]: 'Client Closed Request',
};

/** The `error` field of Nest's error body. */
export function reasonPhrase(status: HttpStatus): string {
  return REASON_PHRASES[status] ?? 'Error';
}
