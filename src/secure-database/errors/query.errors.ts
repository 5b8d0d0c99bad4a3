import { SecureDatabaseError } from './secure-database.error.js';

/** The server rejected a statement; subclasses name the common SQLSTATEs. */
export class QueryError extends SecureDatabaseError {
  readonly code: SecureDatabaseError['code'] = 'DB_QUERY_FAILED';
}

export class UniqueViolationError extends QueryError {
  override readonly code = 'DB_UNIQUE_VIOLATION';
}

export class ExclusionViolationError extends QueryError {
  override readonly code = 'DB_EXCLUSION_VIOLATION';
}

export class ForeignKeyViolationError extends QueryError {
  override readonly code = 'DB_FOREIGN_KEY_VIOLATION';
}

export class NotNullViolationError extends QueryError {
  override readonly code = 'DB_NOT_NULL_VIOLATION';
}

export class CheckViolationError extends QueryError {
  override readonly code = 'DB_CHECK_VIOLATION';
}

/** A value the server could not accept for its type (SQLSTATE class 22: bad syntax, too long, out of range). */
export class InvalidInputError extends QueryError {
  override readonly code = 'DB_INVALID_INPUT';
}

export class SerializationFailureError extends QueryError {
  override readonly code = 'DB_SERIALIZATION_FAILURE';

  override get retryable(): boolean {
    return true;
  }
}

export class DeadlockError extends QueryError {
  override readonly code = 'DB_DEADLOCK';

  override get retryable(): boolean {
    return true;
  }
}

/** statement_timeout fired, or the statement was cancelled (57014). */
export class StatementTimeoutError extends QueryError {
  override readonly code = 'DB_STATEMENT_TIMEOUT';

  override get retryable(): boolean {
    return true;
  }
}

/** lock_timeout fired (55P03). */
export class LockTimeoutError extends QueryError {
  override readonly code = 'DB_LOCK_TIMEOUT';

  override get retryable(): boolean {
    return true;
  }
}

/**
 * 25P02 in_failed_sql_transaction: a statement ran in a transaction after an earlier one failed. The
 * earlier error is the one to look at; this one only says the transaction can do nothing more.
 */
export class InFailedTransactionError extends QueryError {
  override readonly code = 'DB_IN_FAILED_TRANSACTION';
}

/**
 * An int8 value outside ±Number.MAX_SAFE_INTEGER arrived with DATABASE_INT8=number: as a number it
 * would have been silently rounded. The value is not in the message (it is data).
 */
export class Int8OutOfRangeError extends SecureDatabaseError {
  readonly code = 'DB_INT8_OUT_OF_RANGE';

  constructor() {
    super('An int8 value is outside the safe integer range of a JavaScript number (DATABASE_INT8=number): read it as bigint or string (DATABASE_INT8=bigint, or cast it in SQL)');
  }
}

/**
 * With DATABASE_ROW_CASE=camel two result columns map to the same key (`a_b` and `aB`), so one would
 * overwrite the other. Columns are named by position (1-based), not by name: alias one in the SQL.
 */
export class RowCaseCollisionError extends SecureDatabaseError {
  readonly code = 'DB_ROW_CASE_COLLISION';

  constructor(
    readonly firstColumn: number,
    readonly secondColumn: number,
  ) {
    super(`Result columns ${firstColumn} and ${secondColumn} map to the same camelCase key (DATABASE_ROW_CASE=camel): alias one of them in the SQL`);
  }
}

/** The library refused to send a query: more than one statement, an invalid identifier, a misused template. */
export class InvalidQueryError extends SecureDatabaseError {
  readonly code = 'DB_INVALID_QUERY';
}

/** A query that must return exactly one row returned none. */
export class NotFoundError extends SecureDatabaseError {
  readonly code = 'DB_NOT_FOUND';

  constructor(message = 'The query returned no row') {
    super(message);
  }
}

/**
 * A buffered query would have returned more rows than its limit (the maxRows option): the server
 * stopped sending at the limit, so memory never held the rest. Page the query, read it with
 * stream(), or raise maxRows for that one call.
 */
export class ResultTooLargeError extends SecureDatabaseError {
  readonly code = 'DB_RESULT_TOO_LARGE';

  constructor(readonly maxRows: number) {
    super(`The query returned more than ${maxRows} rows, the limit for a buffered result: page it, read it with stream(), or pass a higher maxRows for this call`);
  }
}

/**
 * A row did not match the schema the call gave (`{ schema }`): the database returned something the
 * code does not expect (a migration not applied, a column of another type, a NULL). The message
 * names the row's index and, in development only, the validator's issues and their paths; values
 * never (a validator may quote them), so production logs stay clean.
 */
export class RowValidationError extends SecureDatabaseError {
  readonly code = 'DB_ROW_INVALID';
  /** How many issues the validator reported for the row. */
  readonly issueCount: number;

  constructor(
    readonly rowIndex: number,
    issues: ReadonlyArray<{ message: string; path?: ReadonlyArray<PropertyKey | { key: PropertyKey }> }>,
    verbose: boolean,
  ) {
    const detail = verbose ? `: ${issues.map((i) => `${(i.path ?? []).map((p) => String(typeof p === 'object' ? p.key : p)).join('.') || '(row)'}: ${i.message}`).join('; ')}` : '';
    super(`Row ${rowIndex} of the result did not match the schema (${issues.length} issue${issues.length === 1 ? '' : 's'})${detail}`);
    this.issueCount = issues.length;
  }
}

/** A query that must return at most one row returned more. */
export class TooManyRowsError extends SecureDatabaseError {
  readonly code = 'DB_TOO_MANY_ROWS';

  constructor(readonly rowCount: number) {
    super(`The query returned ${rowCount} rows where at most one was expected`);
  }
}

/**
 * A write reached a server that accepts none (25006 read_only_sql_transaction): a primary demoted by
 * a failover (the connection is then evicted, and the next one finds the new primary), a replica
 * (readOnly connection), or a READ ONLY transaction.
 */
export class ReadOnlyTransactionError extends QueryError {
  override readonly code = 'DB_READ_ONLY';

  override get retryable(): boolean {
    return true;
  }
}
