import { AsyncLocalStorage } from 'node:async_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import pg from 'pg';
import { SessionUnavailableError } from '../errors/pooler.errors.js';
import { InvalidQueryError, QueryError } from '../errors/query.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool, DatabasePoolStats } from '../pool/database-pool.js';
import { type CallOptions, abandonOnAbort, acquireUnlessAborted, beginWithTimeout, callOptionsOf, cancellable, sessionStatementTimeoutSql, throwIfAborted } from './cancellation.js';
import { cursorRows } from './cursor-rows.js';
import { PipelinedRunner } from '../pipeline/pipelined-runner.js';
import { Queryable, type ResultShape, runCached, runStatement } from './queryable.js';
import { CONTROL, ScopedConnection } from './scoped-connection.js';
import { StatementCache } from './statement-cache.js';
import { changesSession, statementFacts } from './statement-facts.js';
import { type TransactionOptions, isRetryableTransactionError, planTransaction, retryDelayMs } from './transaction-options.js';

interface TransactionScope {
  db: DatabasePool;
  /** False once the transaction has ended: work the callback left running may use the service again. */
  active: boolean;
}

// One per process: it only ever holds the pool of the transaction whose callback is running.
const transactionScope = new AsyncLocalStorage<TransactionScope>();
// On Node 20 an enabled AsyncLocalStorage puts a hook on every promise of the process, so it is
// switched off whenever no transaction callback is running (run() switches it on again).
let runningTransactions = 0;

/**
 * The injectable query API of one connection. Constructed by the module (not by Nest's class
 * injection), so named connections each get their own.
 *
 * Each query helper takes a pooled connection for one round trip and gives it back. For several
 * statements that must see each other or succeed together use `transaction`; for session state
 * (advisory locks, SET, LISTEN) use `withConnection`.
 */
export class DatabaseService extends Queryable {
  private readonly logger: Logger;
  /** Named prepared statements per connection for autocommit statements; none behind a transaction pooler. */
  private readonly statements: StatementCache;
  /** Autocommit statements pipelined when the pool is saturated (the pipelining option). */
  private readonly pipeline?: PipelinedRunner;

  constructor(db: DatabasePool) {
    super(db);
    this.logger = new Logger(db.config.name ? `SecureDatabase:${db.config.name}` : 'SecureDatabase');
    this.statements = new StatementCache(db.config.statementCacheSize);
    if (db.config.pipelining) db.reportPipeline((this.pipeline = new PipelinedRunner(db)));
  }

  /** The raw pg.Pool, for what this service does not offer. */
  get pool(): pg.Pool {
    return this.db.pool;
  }

  /** Pool counters and TLS assertion counts. */
  stats(): DatabasePoolStats {
    return this.db.stats();
  }

  protected async run(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    this.assertOutsideTransaction();
    this.db.guardStatement(text);
    if (statementFacts(text).transactionControl) throw transactionControlRefused();
    // Behind a transaction pooler: the SET LOCAL timeouts ahead of the statement, in its round trip.
    const envelope = this.db.statementEnvelope;
    // Pipelined: never cancelled on the server (see CallOptions.signal); the caller is let go at the abort.
    if (this.pipeline) return abandonOnAbort(this.pipeline.run(text, values, shape, this.statements, (client) => this.resetSession(this.db, client)), shape.signal);
    const client = await acquireUnlessAborted(this.db, shape.signal);
    try {
      const result = await cancellable(this.db, client, shape.signal, () =>
        envelope ? runStatement(client, text, values, shape, envelope) : runCached(client, this.statements, text, values, shape),
      );
      // A set lookup per query; the reset's round trip is paid only by statements that may change the session.
      // Behind a transaction pooler those were refused, and the server session is not this client's to reset.
      if (!envelope && changesSession(text, result.command)) await this.resetSession(this.db, client);
      return result;
    } catch (error) {
      this.db.discardIfBroken(client, error);
      if (envelope) this.failEnveloped(error);
      throw this.db.mapError(error);
    } finally {
      this.db.release(client);
    }
  }

  /**
   * A statement failed behind a transaction pooler. The Sync that ended its round trip rolled back the
   * implicit transaction it shared with the SET LOCAL timeouts, so nothing is left to undo. A statement
   * that cannot run there (25001 on PostgreSQL 17 and later: VACUUM, CREATE INDEX CONCURRENTLY … in a
   * pipeline) is told where it can run.
   */
  private failEnveloped(error: unknown): never {
    if ((error as { code?: unknown }).code === '25001') {
      throw new SessionUnavailableError(
        'this statement cannot share its round trip with the SET LOCAL timeouts the module sends behind a transaction pooler: use withConnection() with DATABASE_DIRECT_URL',
        { cause: this.db.mapError(error) },
      );
    }
    throw this.db.mapError(error);
  }

  protected async *streamRows<R>(text: string, values: readonly unknown[] | undefined, batchSize: number, call: CallOptions): AsyncGenerator<R> {
    this.assertOutsideTransaction();
    this.db.guardStatement(text);
    if (statementFacts(text).transactionControl) throw transactionControlRefused();
    const { signal, timeoutMs } = call;
    const client = await acquireUnlessAborted(this.db, signal);
    // Set when the consumer stalled past the idle deadline: the connection was handed back from a timer
    // (this generator, suspended at a yield, could not), so nothing below may touch it again.
    let handedBack = false;
    // A cursor reports no command tag: the text decides (CREATE TEMP TABLE … AS runs through one too).
    const resetAfter = !this.db.transactionPooled && statementFacts(text).sessionText;
    const onIdle = {
      release: async () => {
        handedBack = true;
        // Behind a transaction pooler the cursor's own transaction is rolled back: half a read commits nothing.
        if (this.db.transactionPooled && !this.db.isUnusable(client)) await this.rollbackClient(this.db, client);
        if (resetAfter && !this.db.isUnusable(client)) await this.resetSession(this.db, client);
        this.db.release(client);
      },
    };
    try {
      // A per-call timeout needs a transaction to be SET LOCAL in: the stream then gets one, as behind a pooler.
      if (!this.db.transactionPooled && timeoutMs === undefined) {
        try {
          yield* cursorRows<R>(client, this.db, text, values, batchSize, onIdle, undefined, signal);
        } finally {
          if (resetAfter && !handedBack && !this.db.isUnusable(client)) await this.resetSession(this.db, client);
        }
        return;
      }
      // Behind a transaction pooler the cursor lives in a transaction of its own, under the SET LOCAL timeouts.
      let committed = false;
      try {
        await client.query(beginWithTimeout(this.db.beginStatement('BEGIN'), timeoutMs));
        yield* cursorRows<R>(client, this.db, text, values, batchSize, onIdle, undefined, signal);
        await client.query('COMMIT');
        committed = true;
      } finally {
        if (!committed && !handedBack) await this.rollbackClient(this.db, client);
        // Only with a per-call timeout does a direct stream get here: its session state is reset as in the branch above.
        if (resetAfter && !handedBack && !this.db.isUnusable(client)) await this.resetSession(this.db, client);
      }
    } catch (error) {
      if (!handedBack) this.db.discardIfBroken(client, error);
      throw this.db.mapError(error);
    } finally {
      if (!handedBack) this.db.release(client);
    }
  }

  /** How long a stream's consumer may pause between rows before the stream ends (streamIdleTimeoutMs). */
  get streamIdleTimeoutMs(): number {
    return this.db.config.timeouts.streamIdleMs;
  }

  private async rollbackClient(db: DatabasePool, client: pg.PoolClient): Promise<void> {
    try {
      await client.query('ROLLBACK');
    } catch (error) {
      db.markUnusable(client);
      this.logger.warn(`ROLLBACK failed; the connection was discarded: ${db.describe(error)}`);
    }
  }

  /**
   * Runs `fn` in a transaction on one connection: BEGIN (with the isolation level and READ ONLY
   * asked for), COMMIT when `fn` resolves, ROLLBACK when it throws, and the connection always goes
   * back to the pool, or is destroyed when ROLLBACK itself failed (its state is then unknown).
   * Whatever `fn` throws propagates unchanged. Serialization failures and deadlocks rerun the whole
   * transaction (see TransactionOptions.retries). Query through `tx` only: the service itself
   * refuses queries from inside `fn`.
   */
  async transaction<T>(fn: (tx: ScopedConnection) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    this.assertOutsideTransaction();
    const plan = planTransaction(options);
    const call = callOptionsOf(options);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transactionAttempt(fn, beginWithTimeout(this.db.beginStatement(plan.begin), call.timeoutMs), call.signal);
      } catch (error) {
        if (attempt >= plan.retries || !isRetryableTransactionError(error)) throw error;
      }
      await sleep(retryDelayMs(attempt));
    }
  }

  private async transactionAttempt<T>(fn: (tx: ScopedConnection) => Promise<T>, begin: string, signal?: AbortSignal): Promise<T> {
    const client = await acquireUnlessAborted(this.db, signal);
    const tx = new ScopedConnection(this.db, client, 'transaction', signal);
    const scope: TransactionScope = { db: this.db, active: true };
    runningTransactions++;
    try {
      await tx[CONTROL](begin);
      let result: T;
      try {
        result = await transactionScope.run(scope, fn, tx);
        throwIfAborted(signal); // aborted: rolled back, even when the callback swallowed the cancellation
      } catch (error) {
        await this.rollback(tx, client);
        throw error;
      }
      const commit = await tx[CONTROL]('COMMIT');
      // COMMIT of a transaction in which a statement failed (and `fn` caught the error) rolls back.
      if (commit.command === 'ROLLBACK') {
        throw tx.firstError ?? new QueryError('the transaction had failed and was rolled back instead of committed', { sqlstate: '25P02' });
      }
      return result;
    } finally {
      scope.active = false;
      if (--runningTransactions === 0) transactionScope.disable();
      tx.end();
      // A SET (not LOCAL) inside the transaction outlives its COMMIT. (Behind a transaction pooler only SET LOCAL gets here.)
      if (tx.sessionChanged && !tx.broken && !this.db.transactionPooled) await this.resetSession(this.db, client);
      this.db.release(client);
    }
  }

  private async rollback(tx: ScopedConnection, client: pg.PoolClient): Promise<void> {
    if (tx.broken) return; // released as unusable anyway
    try {
      await tx[CONTROL]('ROLLBACK');
    } catch (error) {
      // The transaction may still be open on that connection: never hand it to someone else.
      this.db.markUnusable(client);
      this.logger.warn(`ROLLBACK failed; the connection was discarded: ${this.db.describe(error)}`);
    }
  }

  /**
   * Runs `fn` with one connection of its own, for session-level work (advisory locks, SET, temporary
   * tables, LISTEN). Before the connection returns to the pool its session is reset with DISCARD
   * ALL (which also releases advisory locks); when that fails the connection is destroyed instead.
   * Settings from DATABASE_URL and the module (timeouts, application_name) survive the reset; a
   * transaction left open makes the reset fail, so that connection is destroyed. Unlike inside
   * `transaction`, the service stays usable in `fn` (session work often coordinates with other
   * connections), but each connection it takes meanwhile is a second one from the same pool.
   *
   * Behind a transaction pooler there is no session to hold: the work runs on a connection of the
   * DATABASE_DIRECT_URL pool, or is refused (SessionUnavailableError) when none is configured.
   */
  async withConnection<T>(fn: (connection: ScopedConnection) => Promise<T>, options: CallOptions = {}): Promise<T> {
    this.assertOutsideTransaction();
    const { signal, timeoutMs } = callOptionsOf(options ?? {});
    const db = this.sessionPool();
    const client = await acquireUnlessAborted(db, signal);
    const connection = new ScopedConnection(db, client, 'session', signal);
    try {
      if (timeoutMs !== undefined) await connection[CONTROL](sessionStatementTimeoutSql(timeoutMs));
      return await fn(connection);
    } finally {
      connection.end();
      if (!connection.broken) await this.resetSession(db, client);
      db.release(client);
    }
  }

  private sessionPool(): DatabasePool {
    if (!this.db.transactionPooled) return this.db;
    if (this.db.direct) return this.db.direct;
    throw new SessionUnavailableError(
      'withConnection needs a server session of its own, which a transaction pooler does not give (each transaction may run on another server connection, shared with other clients): ' +
        "set DATABASE_DIRECT_URL to the database's direct address to run it there, or use transaction() for work that fits in one transaction",
    );
  }

  private async resetSession(db: DatabasePool, client: pg.PoolClient): Promise<void> {
    this.statements.forget(client); // DISCARD ALL drops them on the server too
    try {
      await client.query('DISCARD ALL');
      await db.restoreSessionSettings(client);
    } catch (error) {
      db.markUnusable(client);
      this.logger.warn(`Resetting a session with DISCARD ALL failed; the connection was discarded: ${db.describe(error)}`);
    }
  }

  /**
   * Inside a transaction callback the service would take a second connection from the pool. Its
   * queries would not see the transaction's uncommitted work and its writes would commit even when
   * the transaction rolls back; and when every pooled connection is held by such a callback, each
   * waits for a connection only its own return can free: the pool deadlocks until the acquire
   * timeout. So it is refused, loudly, instead of silently running elsewhere.
   */
  private assertOutsideTransaction(): void {
    const scope = transactionScope.getStore();
    if (scope !== undefined && scope.active && scope.db === this.db) {
      throw new InvalidQueryError(
        'A query was sent through DatabaseService inside its own transaction callback: it would run on another connection, outside the transaction. Use the transaction handle passed to the callback (tx.query, tx.fetch …).',
      );
    }
  }
}

function transactionControlRefused(): InvalidQueryError {
  return new InvalidQueryError(
    'BEGIN, COMMIT and ROLLBACK cannot be sent through the query helpers: each call may run on another pooled connection (and would capture other callers). Use db.transaction(async (tx) => …), which runs them on one connection',
  );
}
