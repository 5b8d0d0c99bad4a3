import pg from 'pg';
import {
  AuthenticationError,
  ConnectTimeoutError,
  ConnectionError,
  PoolExhaustedError,
  ShuttingDownError,
  SslNotActiveError,
  TlsVerificationError,
  TooManyConnectionsError,
} from './connection.errors.js';
import {
  CheckViolationError,
  DeadlockError,
  ExclusionViolationError,
  ForeignKeyViolationError,
  InFailedTransactionError,
  InvalidInputError,
  LockTimeoutError,
  NotNullViolationError,
  QueryError,
  ReadOnlyTransactionError,
  SerializationFailureError,
  StatementTimeoutError,
  UniqueViolationError,
} from './query.errors.js';
import { type SchemaFacts, SecureDatabaseError } from './secure-database.error.js';

type ErrorClass = new (message: string, options: { cause?: unknown; sqlstate?: string; schemaFacts?: SchemaFacts }) => SecureDatabaseError;

const BY_SQLSTATE: Record<string, [ErrorClass, string]> = {
  '23505': [UniqueViolationError, 'unique constraint violated'],
  '23P01': [ExclusionViolationError, 'exclusion constraint violated'],
  '23503': [ForeignKeyViolationError, 'foreign key constraint violated'],
  '23502': [NotNullViolationError, 'not-null constraint violated'],
  '23514': [CheckViolationError, 'check constraint violated'],
  '40001': [SerializationFailureError, 'serialization failure'],
  '40P01': [DeadlockError, 'deadlock detected'],
  '57014': [StatementTimeoutError, 'statement cancelled (statement timeout)'],
  '55P03': [LockTimeoutError, 'lock not available (lock timeout)'],
  '25P02': [
    InFailedTransactionError,
    'an earlier statement in this transaction failed; later statements are ignored until it ends: use a nested transaction (savepoint) to continue after an error',
  ],
  '25006': [ReadOnlyTransactionError, 'the server accepts no writes (read-only transaction, standby or demoted primary)'],
  '53300': [TooManyConnectionsError, 'the server has no connection slots left'],
  '57P01': [ConnectionError, 'connection terminated by an administrator'],
  '57P02': [ConnectionError, 'connection terminated by a server crash'],
  '57P03': [ConnectionError, 'the server is starting up or shutting down'],
  '57P05': [ConnectionError, 'connection closed by the server after being idle (idle_session_timeout)'],
};

const BY_SQLSTATE_CLASS: Record<string, [ErrorClass, string]> = {
  '22': [InvalidInputError, 'invalid input value'],
  '28': [AuthenticationError, 'authentication failed (check the user and password in DATABASE_URL)'],
  '08': [ConnectionError, 'connection failure'],
};

export const TLS_HANDSHAKE_RESET = 'connection reset during the TLS handshake';

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'connection closed',
  ETIMEDOUT: 'network timeout',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'host name lookup failed (DNS)',
};

const TLS_CODES: Record<string, string> = {
  ERR_TLS_CERT_ALTNAME_INVALID: 'the server certificate does not name this host (sslmode=verify-full)',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the server certificate is self-signed and not trusted',
  SELF_SIGNED_CERT_IN_CHAIN: 'the server certificate chain ends in an untrusted CA',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the server certificate is not signed by a trusted CA',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'the server certificate is not signed by a trusted CA',
  UNABLE_TO_GET_ISSUER_CERT: 'the server certificate is not signed by a trusted CA',
  CERT_HAS_EXPIRED: 'the server certificate has expired',
  CERT_NOT_YET_VALID: 'the server certificate is not yet valid',
  CERT_SIGNATURE_FAILURE: 'the server certificate signature does not verify',
  CERT_REVOKED: 'the server certificate has been revoked',
  INVALID_PURPOSE: 'the server certificate is not for TLS server use',
  CA_MD_TOO_WEAK: 'the server certificate is signed with a weak digest (such as SHA-1)',
  EE_KEY_TOO_SMALL: 'the server certificate key is too small',
  CA_KEY_TOO_SMALL: 'the CA certificate key is too small',
  // OpenSSL's X509_V_ERR_UNSPECIFIED: seen for a SHA-1-signed chain under OpenSSL 3's default security level.
  UNSPECIFIED: 'the server certificate failed verification (OpenSSL gave no reason; a SHA-1 signature, say)',
  // OpenSSL's handshake errors (a protocol_version alert from a server offering only TLS 1.0/1.1, no cipher in common).
  EPROTO: 'the TLS handshake failed (no protocol version or cipher in common with the server; TLS 1.2 is the minimum)',
};

// Messages of node-postgres / pg-pool errors that carry no code.
const DRIVER_MESSAGES: Array<[RegExp, ErrorClass, string]> = [
  [/^The server does not support SSL connections$/, SslNotActiveError, 'the server does not offer TLS'],
  [/^timeout exceeded when trying to connect$/, PoolExhaustedError, 'no pooled connection became free within the acquire timeout'],
  [/timeout expired|due to connection timeout/, ConnectTimeoutError, 'connecting took longer than the connect timeout'],
  [/^Query read timeout$/, ConnectionError, 'no answer from the server within the statement timeout (network)'],
  [/Connection terminated|not queryable|Client was closed|connection error/i, ConnectionError, 'connection lost'],
  [/Cannot use a pool after calling end/, ShuttingDownError, ''],
];

export interface ErrorMappingOptions {
  /** development/test: append the driver's own message (may contain names and values). */
  verbose: boolean;
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * What a production error keeps of the driver's error: its code alone. The driver's message and
 * fields name users, databases, hosts, certificates and values, and whatever logs an error with its
 * `cause` (Nest's ExceptionHandler, Node's unhandled-rejection report, a logger) would print them.
 */
export interface DriverErrorCode {
  /** SQLSTATE, Node network code (ECONNREFUSED) or TLS code (ERR_TLS_CERT_ALTNAME_INVALID), when there is one. */
  code?: string;
}

/**
 * The schema objects a server error names: kept in production too, so code that branches on
 * `error.constraint` behaves the same in every environment. Names are the app's own schema, not
 * user data; `detail`, `where` and `hint` quote values and SQL and are never kept.
 */
function schemaFactsOf(error: unknown): SchemaFacts {
  if (!(error instanceof pg.DatabaseError)) return {};
  const facts: SchemaFacts = {};
  if (error.schema) facts.schema = error.schema;
  if (error.table) facts.table = error.table;
  if (error.column) facts.column = error.column;
  if (error.constraint) facts.constraint = error.constraint;
  return facts;
}

function build(Cls: ErrorClass, summary: string, error: unknown, sqlstate: string | undefined, verbose: boolean): SecureDatabaseError {
  const message = sqlstate ? `${summary} (SQLSTATE ${sqlstate})` : summary;
  const schemaFacts = schemaFactsOf(error);
  if (!verbose) {
    const code = errorCode(error);
    return new Cls(message, { cause: (code ? { code } : {}) satisfies DriverErrorCode, sqlstate, schemaFacts });
  }
  const driverMessage = error instanceof Error ? error.message : String(error);
  return new Cls(`${message}: ${driverMessage}`, { cause: error, sqlstate, schemaFacts });
}

/** Maps anything node-postgres, pg-pool or the network threw onto the library's typed errors. */
export function toDatabaseError(error: unknown, { verbose }: ErrorMappingOptions): SecureDatabaseError {
  if (error instanceof SecureDatabaseError) return error;
  const code = errorCode(error);
  if (error instanceof pg.DatabaseError && code) {
    const [Cls, summary] = BY_SQLSTATE[code] ?? BY_SQLSTATE_CLASS[code.slice(0, 2)] ?? [QueryError, 'the server rejected the statement'];
    return build(Cls, summary, error, code, verbose);
  }
  // Node's wording for a peer that hung up before the TLS session was established: kept apart, since
  // startup tells a server that cannot speak direct TLS by it (pool/startup-connection.ts).
  if (code === 'ECONNRESET' && String((error as { message?: unknown }).message).includes('before secure TLS connection was established')) {
    return build(ConnectionError, TLS_HANDSHAKE_RESET, error, undefined, verbose);
  }
  if (code && NETWORK_CODES[code]) return build(ConnectionError, NETWORK_CODES[code], error, undefined, verbose);
  if (code && (TLS_CODES[code] || code.startsWith('ERR_TLS_') || code.startsWith('ERR_SSL_'))) {
    return build(TlsVerificationError, `TLS verification failed: ${TLS_CODES[code] ?? code}`, error, undefined, verbose);
  }
  const message = error instanceof Error ? error.message : '';
  for (const [pattern, Cls, summary] of DRIVER_MESSAGES) {
    if (pattern.test(message)) return build(Cls, summary, error, undefined, verbose);
  }
  return build(QueryError, 'the database operation failed', error, undefined, verbose);
}

/**
 * True when the connection that produced `error` must not go back to the pool: anything that is not
 * an ordinary statement error (network, protocol, client-side timeout, FATAL, admin termination).
 */
export function isConnectionUnusable(error: unknown): boolean {
  // The module's own refusals (a result over its row limit, say) leave the connection as it was.
  if (error instanceof SecureDatabaseError) return false;
  if (!(error instanceof pg.DatabaseError)) return true;
  const code = error.code ?? '';
  return error.severity === 'FATAL' || error.severity === 'PANIC' || code.startsWith('08') || code.startsWith('57P');
}
