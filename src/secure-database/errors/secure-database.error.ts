/** The library's stable, machine-readable error codes (also sent to HTTP clients by the exception filter). */
export type DatabaseErrorCode =
  | 'DB_CONFIGURATION'
  | 'DB_SSL_NOT_ACTIVE'
  | 'DB_TLS_VERIFICATION_FAILED'
  | 'DB_AUTHENTICATION_FAILED'
  | 'DB_CONNECTION_FAILED'
  | 'DB_CONNECT_TIMEOUT'
  | 'DB_TOO_MANY_CONNECTIONS'
  | 'DB_POOL_EXHAUSTED'
  | 'DB_SHUTTING_DOWN'
  | 'DB_QUERY_FAILED'
  | 'DB_INVALID_QUERY'
  | 'DB_UNIQUE_VIOLATION'
  | 'DB_EXCLUSION_VIOLATION'
  | 'DB_FOREIGN_KEY_VIOLATION'
  | 'DB_NOT_NULL_VIOLATION'
  | 'DB_CHECK_VIOLATION'
  | 'DB_INVALID_INPUT'
  | 'DB_SERIALIZATION_FAILURE'
  | 'DB_DEADLOCK'
  | 'DB_STATEMENT_TIMEOUT'
  | 'DB_LOCK_TIMEOUT'
  | 'DB_NOT_FOUND'
  | 'DB_TOO_MANY_ROWS'
  | 'DB_RESULT_TOO_LARGE'
  | 'DB_READ_ONLY'
  | 'DB_SERVER_ROLE_MISMATCH'
  | 'DB_SESSION_UNAVAILABLE'
  | 'DB_STREAM_IDLE_TIMEOUT'
  | 'DB_QUERY_CANCELLED';

/**
 * Base of every error the library throws. `message` never carries SQL text, parameter values, schema
 * names or credentials unless the module runs in development/test; the driver's error (with all its
 * detail) stays on `cause` for logs that are allowed to see it.
 */
export abstract class SecureDatabaseError extends Error {
  abstract readonly code: DatabaseErrorCode;
  /** The server's SQLSTATE when the server reported the error. */
  readonly sqlstate?: string;

  constructor(message: string, options: { cause?: unknown; sqlstate?: string } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.sqlstate = options.sqlstate;
  }

  /** True when the same operation may succeed if tried again later (the filter adds Retry-After). */
  get retryable(): boolean {
    return false;
  }
}
