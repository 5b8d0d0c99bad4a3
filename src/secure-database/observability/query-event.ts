/**
 * One statement the module ran for a caller, as the `onQuery` hook receives it. It never holds a bound
 * value: `text` is the statement as sent, with `$n` placeholders (values travel separately, as bind
 * parameters); literals written into the text itself are the caller's (the slow-query log prints the
 * normalised text in production, literals replaced by `?`).
 */
export interface QueryEvent {
  /** The connection's name (`default` for the unnamed one; the name of a named connection or replica; DATABASE_DIRECT_URL's pool: `direct`, or `<name>-direct`). */
  connection: string;
  /** The statement text as sent, with `$n` placeholders. */
  text: string;
  /** 16 hex digits, equal for texts that differ only in whitespace, comments, keyword case, literals or list lengths (see statement-fingerprint.ts). */
  fingerprint: string;
  /** The command: the server's command tag when it answered (SELECT, INSERT …), else the statement's first keyword. */
  operation: string;
  /** From the call to its answer (or, for a stream, to its last row), including any wait for a pooled connection. */
  durationMs: number;
  /** Rows returned or affected (for a stream, rows read); null when the statement reports none or failed. */
  rows: number | null;
  /** `ok`, or `error` with the module's error code and the SQLSTATE when the server sent one. */
  outcome: 'ok' | 'error';
  /** The module's error code (DB_UNIQUE_VIOLATION, DB_RESULT_TOO_LARGE …) when outcome is `error`. */
  errorCode?: string;
  /** The server's SQLSTATE when outcome is `error` and the server reported it. */
  sqlstate?: string;
  /** Sent on a connection shared with other callers' statements (pipelining, DATABASE_PIPELINING). */
  pipelined: boolean;
  /** Ran as a prepared statement the connection had already parsed (a statement-cache hit: Bind/Execute only). */
  cached: boolean;
  /** Ran inside transaction() (or a nested transaction / @Transactional()). */
  inTransaction: boolean;
  /** Ran on a readOnly connection (DATABASE_READ_ONLY: a read replica). */
  replica: boolean;
  /** Read through stream(). */
  stream: boolean;
}

/** The `onQuery` module option: called once per statement after it settled; what it throws is logged once and never reaches the caller. */
export type QueryEventHook = (event: QueryEvent) => void;

/** What the statement path knows of a statement besides its text (set on ResultShape by the path that sent it). */
export interface StatementRoute {
  pipelined?: boolean;
  cached?: boolean;
}

const KNOWN_OPERATIONS = new Set([
  ...['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'WITH', 'VALUES', 'TABLE', 'CALL', 'DO', 'COPY'],
  ...['CREATE', 'ALTER', 'DROP', 'TRUNCATE', 'COMMENT', 'GRANT', 'REVOKE', 'ANALYZE', 'VACUUM', 'REINDEX', 'CLUSTER', 'REFRESH'],
  ...['SET', 'RESET', 'SHOW', 'LOCK', 'LISTEN', 'UNLISTEN', 'NOTIFY', 'DISCARD', 'EXPLAIN', 'PREPARE', 'EXECUTE', 'DEALLOCATE', 'SAVEPOINT', 'RELEASE', 'ROLLBACK'],
]);

/** The first keyword of a normalised statement when it is a known command, else OTHER (a low-cardinality attribute). */
export function operationOf(normalized: string): string {
  const space = normalized.indexOf(' ');
  const first = (space === -1 ? normalized : normalized.slice(0, space)).toUpperCase();
  return KNOWN_OPERATIONS.has(first) ? first : 'OTHER';
}
