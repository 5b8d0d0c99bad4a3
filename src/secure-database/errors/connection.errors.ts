import { SecureDatabaseError } from './secure-database.error.js';

/** A connection was established without the TLS the configuration demands (socket or pg_stat_ssl disagree). */
export class SslNotActiveError extends SecureDatabaseError {
  readonly code = 'DB_SSL_NOT_ACTIVE';

  constructor(reason: string, options: { cause?: unknown } = {}) {
    super(`SSL required but not active: ${reason}`, options);
  }
}

/** The TLS handshake failed verification: unknown CA, wrong host name, expired certificate, server without TLS. */
export class TlsVerificationError extends SecureDatabaseError {
  readonly code = 'DB_TLS_VERIFICATION_FAILED';
}

/** The server rejected the credentials or the client's address (SQLSTATE class 28). */
export class AuthenticationError extends SecureDatabaseError {
  readonly code = 'DB_AUTHENTICATION_FAILED';
}

/** The server could not be reached or the connection broke (refused, reset, DNS, terminated by the server). */
export class ConnectionError extends SecureDatabaseError {
  readonly code = 'DB_CONNECTION_FAILED';

  override get retryable(): boolean {
    return true;
  }
}

/** Connecting (DNS, TCP, TLS handshake, authentication and the TLS assertion) took longer than the connect timeout. */
export class ConnectTimeoutError extends SecureDatabaseError {
  readonly code = 'DB_CONNECT_TIMEOUT';

  override get retryable(): boolean {
    return true;
  }
}

/** The server has no connection slots left (53300). */
export class TooManyConnectionsError extends SecureDatabaseError {
  readonly code = 'DB_TOO_MANY_CONNECTIONS';

  override get retryable(): boolean {
    return true;
  }
}

/** No pooled connection became free within the acquire timeout. */
export class PoolExhaustedError extends SecureDatabaseError {
  readonly code = 'DB_POOL_EXHAUSTED';

  override get retryable(): boolean {
    return true;
  }
}

/** The module is draining for shutdown and takes no new work. */
export class ShuttingDownError extends SecureDatabaseError {
  readonly code = 'DB_SHUTTING_DOWN';

  constructor() {
    super('The database pool is shutting down and accepts no new queries');
  }

  override get retryable(): boolean {
    return true;
  }
}

/**
 * No server in DATABASE_URL is of the kind the connection needs: target_session_attrs (read-write,
 * primary, standby …) or a readOnly connection that reached a writable primary. Usually a failover in
 * progress (the old primary gone, the standby not yet promoted), so it is retried like a connection error.
 */
export class ServerRoleMismatchError extends SecureDatabaseError {
  readonly code = 'DB_SERVER_ROLE_MISMATCH';

  override get retryable(): boolean {
    return true;
  }
}
