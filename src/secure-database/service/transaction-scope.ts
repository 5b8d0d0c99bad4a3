import { AsyncLocalStorage } from 'node:async_hooks';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { DatabasePool } from '../pool/database-pool.js';
import type { ScopedConnection } from './scoped-connection.js';

/** One transaction() or nested transaction whose callback runs in this async context. */
interface TransactionScope {
  db: DatabasePool;
  /** The handle the callback received: the service's own calls join the transaction through it. */
  handle: ScopedConnection;
  /** False once the callback has settled: work it left running may no longer join. */
  active: boolean;
  /** The scope current when this one began: the transaction this one is nested in, or another pool's. */
  outer?: TransactionScope;
}

// One per process; each scope names its pool, so a second connection's service never joins the first's transaction.
const transactionScope = new AsyncLocalStorage<TransactionScope>();
// On Node 20 an enabled AsyncLocalStorage puts a hook on every promise of the process, so it is
// switched off whenever no transaction callback is running (run() switches it on again).
let runningCallbacks = 0;

/**
 * Runs a transaction's (or savepoint's) callback with `handle` as the transaction the service's
 * calls join. When the callback settles, the handle stops working and the scope stops accepting
 * joiners, before the module sends COMMIT, RELEASE or ROLLBACK: work the callback left running can
 * never slip a statement in after them.
 */
export async function runInTransactionScope<T>(db: DatabasePool, handle: ScopedConnection, fn: (tx: ScopedConnection) => Promise<T>): Promise<T> {
  const scope: TransactionScope = { db, handle, active: true, outer: transactionScope.getStore() };
  runningCallbacks++;
  try {
    return await transactionScope.run(scope, fn, handle);
  } finally {
    scope.active = false;
    handle.end();
    if (--runningCallbacks === 0) transactionScope.disable();
  }
}

/**
 * The handle of the innermost transaction of `db` whose callback the caller runs in, if any.
 * Refuses a caller from a callback that has ended: it can no longer join that transaction, and
 * running it elsewhere (its own connection, autocommit) would split it from the transaction it
 * was written for (its writes could commit after the transaction rolled back).
 */
export function joinedTransaction(db: DatabasePool): ScopedConnection | undefined {
  // No callback running: the storage is disabled and holds nothing (skips getStore on the autocommit path).
  if (runningCallbacks === 0) return undefined;
  for (let scope = transactionScope.getStore(); scope !== undefined; scope = scope.outer) {
    if (scope.db !== db) continue;
    if (!scope.active) {
      throw new InvalidQueryError(
        'A DatabaseService call came from work a transaction callback left running after the transaction (or nested transaction) ended: it can no longer join it. Await that work inside the callback, or start it outside the transaction',
      );
    }
    return scope.handle;
  }
  return undefined;
}

/** True when the caller runs inside a transaction callback of `db` (ended or not). */
export function insideTransactionOf(db: DatabasePool): boolean {
  for (let scope = transactionScope.getStore(); scope !== undefined; scope = scope.outer) if (scope.db === db) return true;
  return false;
}
