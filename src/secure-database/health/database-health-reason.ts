import type { DatabaseErrorCode, SecureDatabaseError } from '../errors/secure-database.error.js';

// Fixed phrases only: a health endpoint is often public, so nothing from the driver's message.
const BY_CODE: Partial<Record<DatabaseErrorCode, string>> = {
  DB_POOL_EXHAUSTED: 'pool exhausted',
  DB_SHUTTING_DOWN: 'shutting down',
  DB_SSL_NOT_ACTIVE: 'ssl not active',
  DB_TLS_VERIFICATION_FAILED: 'tls verification failed',
  DB_AUTHENTICATION_FAILED: 'authentication failed',
  DB_CONNECT_TIMEOUT: 'connect timeout',
  DB_TOO_MANY_CONNECTIONS: 'too many connections',
  DB_STATEMENT_TIMEOUT: 'statement timeout',
  DB_CONFIGURATION: 'configuration error',
};

// DB_CONNECTION_FAILED covers several causes an operator tells apart at a glance.
const CONNECTION_CAUSES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection reset',
  ETIMEDOUT: 'network timeout',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host not found',
  '57P01': 'connection terminated by the server',
  '57P02': 'connection terminated by the server',
  '57P03': 'server starting up or shutting down',
  '57P05': 'connection terminated by the server',
};

/** The short, sanitized reason a `down` health result gives for a database error. */
export function downReason(error: SecureDatabaseError): string {
  if (error.code === 'DB_CONNECTION_FAILED') {
    const cause = error.sqlstate ?? (error.cause as { code?: unknown } | undefined)?.code;
    return (typeof cause === 'string' && CONNECTION_CAUSES[cause]) || (error.sqlstate?.startsWith('08') ? 'connection failure' : 'connection lost');
  }
  return BY_CODE[error.code] ?? 'query failed';
}
