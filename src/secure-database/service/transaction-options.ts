import { InvalidQueryError } from '../errors/query.errors.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { CallOptions } from './cancellation.js';

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable';

/** `signal` and `timeoutMs` (CallOptions) cover the whole transaction: each statement, and the rollback on abort. */
export interface TransactionOptions extends CallOptions {
  /** Default: the server's default_transaction_isolation (read committed unless configured). */
  isolationLevel?: IsolationLevel;
  /** BEGIN … READ ONLY: the server refuses writes. */
  readOnly?: boolean;
  /**
   * How many more times to run the whole transaction after a serialization failure (40001) or a
   * deadlock (40P01), with a randomized, growing pause between attempts. Default
   * DEFAULT_TRANSACTION_RETRIES (3). The callback must therefore be safe to run again: keep side
   * effects outside the database (e-mails, HTTP calls) out of it, or pass 0.
   */
  retries?: number;
}

/** Serialization failures are expected under SERIALIZABLE and deadlocks under any level: retry a few times. */
export const DEFAULT_TRANSACTION_RETRIES = 3;

const ISOLATION_SQL: Record<IsolationLevel, string> = {
  'read committed': 'READ COMMITTED',
  'repeatable read': 'REPEATABLE READ',
  serializable: 'SERIALIZABLE',
};

// Full jitter: a random pause up to 10, 20, 40 … ms (at most 1 s), so the transactions that
// collided do not collide again in lockstep.
const BACKOFF_BASE_MS = 10;
const BACKOFF_CAP_MS = 1_000;

export interface TransactionPlan {
  begin: string;
  retries: number;
}

/** Validates the options (callers in plain JavaScript included) and builds the BEGIN statement. */
export function planTransaction({ isolationLevel, readOnly, retries = DEFAULT_TRANSACTION_RETRIES }: TransactionOptions): TransactionPlan {
  let begin = 'BEGIN';
  if (isolationLevel !== undefined) {
    if (!Object.hasOwn(ISOLATION_SQL, isolationLevel)) throw new InvalidQueryError(`isolationLevel must be one of: ${Object.keys(ISOLATION_SQL).join(', ')}`);
    begin += ` ISOLATION LEVEL ${ISOLATION_SQL[isolationLevel]}`;
  }
  if (readOnly !== undefined && typeof readOnly !== 'boolean') throw new InvalidQueryError('readOnly must be a boolean');
  if (readOnly) begin += ' READ ONLY';
  if (!Number.isInteger(retries) || retries < 0) throw new InvalidQueryError('retries must be a whole number, 0 or more');
  return { begin, retries };
}

/** True for the failures that running the same transaction again can cure. */
export function isRetryableTransactionError(error: unknown): boolean {
  return error instanceof SecureDatabaseError && (error.sqlstate === '40001' || error.sqlstate === '40P01');
}

/** The pause before retry number `attempt + 1`. */
export function retryDelayMs(attempt: number): number {
  return Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
}

/**
 * A nested transaction is a savepoint of the outermost one, which cannot change the isolation level
 * or READ ONLY: options that ask for other characteristics than the outermost began with are
 * refused rather than silently not applied (repeating them is allowed, so a method that needs
 * SERIALIZABLE can say so and still be called inside a SERIALIZABLE transaction). retries is
 * validated and ignored: only the outermost transaction reruns.
 */
export function refuseNestedCharacteristics(outermost: TransactionOptions, nested: TransactionOptions): void {
  planTransaction(nested);
  if (nested.isolationLevel !== undefined && nested.isolationLevel !== outermost.isolationLevel) {
    throw new InvalidQueryError(
      'A nested transaction runs in a savepoint, which cannot change the isolation level: leave isolationLevel out of the nested call, or give the outermost transaction the level it needs',
    );
  }
  if (nested.readOnly !== undefined && nested.readOnly !== (outermost.readOnly ?? false)) {
    throw new InvalidQueryError(
      'A nested transaction runs in a savepoint, which cannot change READ ONLY: leave readOnly out of the nested call, or give the outermost transaction the readOnly it needs',
    );
  }
}
