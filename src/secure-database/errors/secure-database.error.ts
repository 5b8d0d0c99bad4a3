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
  | 'DB_ROW_INVALID'
  | 'DB_READ_ONLY'
  | 'DB_SERVER_ROLE_MISMATCH'
  | 'DB_SESSION_UNAVAILABLE'
  | 'DB_STREAM_IDLE_TIMEOUT'
  | 'DB_IN_FAILED_TRANSACTION'
  | 'DB_INT8_OUT_OF_RANGE'
  | 'DB_ROW_CASE_COLLISION'
  | 'DB_QUERY_CANCELLED';

/**
 * Names of the schema objects the server reported for an error (its `schema_name`, `table_name`,
 * `column_name` and `constraint_name` fields): names only, never data (the driver's `detail`, which
 * quotes values, is not kept).
 */
export interface SchemaFacts {
  schema?: string;
  table?: string;
  column?: string;
  constraint?: string;
}

/**
 * Base of every error the library throws. `message` never carries SQL text, parameter values, schema
 * names or credentials unless the module runs in development/test; the driver's error (with all its
 * detail) stays on `cause` for logs that are allowed to see it. The schema names the server reported
 * (`constraint`, `table`, `column`, `schema`) are readable as properties in every environment, for
 * code that decides what to do from them, but are not part of the message or of serialization.
 */
export abstract class SecureDatabaseError extends Error {
  abstract readonly code: DatabaseErrorCode;
  /** The server's SQLSTATE when the server reported the error. */
  readonly sqlstate?: string;
  // A private field behind prototype getters, not own enumerable properties: loggers that copy an
  // error's enumerable properties (pino's err serializer, JSON.stringify, util.inspect) do not pick
  // the names up, so production logs stay free of them unless the app logs them on purpose.
  readonly #schemaFacts: SchemaFacts;

  constructor(message: string, options: { cause?: unknown; sqlstate?: string; schemaFacts?: SchemaFacts } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.sqlstate = options.sqlstate;
    this.#schemaFacts = Object.freeze({ ...options.schemaFacts });
  }

  /** The constraint the server named (a unique, foreign key, check or exclusion violation), in every environment. */
  get constraint(): string | undefined {
    return this.#schemaFacts.constraint;
  }

  /** The table the server named, in every environment. */
  get table(): string | undefined {
    return this.#schemaFacts.table;
  }

  /** The column the server named (a not-null violation, say), in every environment. */
  get column(): string | undefined {
    return this.#schemaFacts.column;
  }

  /** The schema of the table the server named, in every environment. */
  get schema(): string | undefined {
    return this.#schemaFacts.schema;
  }

  /** True when the same operation may succeed if tried again later (the filter adds Retry-After). */
  get retryable(): boolean {
    return false;
  }
}
