import { setTimeout as sleep } from 'node:timers/promises';
import { Logger } from '@nestjs/common';
import pg from 'pg';
import { SessionUnavailableError } from '../errors/pooler.errors.js';
import { InFailedTransactionError, InvalidQueryError, QueryError } from '../errors/query.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import { type CopyFromOptions, type CopyRows, copyFromPool } from '../copy/copy-from.js';
import type { CopyTable } from '../copy/copy-statement.js';
import { notifyCall } from '../listen/channel-name.js';
import { type ListenOptions, NotificationListener, type NotificationHandler, type Subscription } from '../listen/notification-listener.js';
import { type CopyRow, type CopyToOptions, copyToPool, copyToResult } from '../copy/copy-to.js';
import type { DatabasePool, DatabasePoolStats } from '../pool/database-pool.js';
import { type CallOptions, type ResolvedCallOptions, abandonOnAbort, acquireUnlessAborted, beginWithTimeout, callOptionsOf, cancellable, sessionStatementTimeoutSql, throwIfAborted } from './cancellation.js';
import { cursorRows } from './cursor-rows.js';
import { PipelinedRunner } from '../pipeline/pipelined-runner.js';
import type { SqlFragment } from './sql.js';
import { Queryable, type ResultShape, runCached, runStatement } from './queryable.js';
import { CONTROL, ScopedConnection } from './scoped-connection.js';
import { StatementCache } from './statement-cache.js';
import { changesSession, statementFacts } from './statement-facts.js';
import { type TransactionOptions, isRetryableTransactionError, planTransaction, retryDelayMs } from './transaction-options.js';
import { joinedTransaction, runInTransactionScope } from './transaction-scope.js';
import { type DatabaseSettings, SettingsInUse, resolveSettings } from '../settings/database-settings.js';
import { runWithSettings } from '../settings/settings-scope.js';

/**
 * The injectable query API of one connection. Constructed by the module (not by Nest's class
 * injection), so named connections each get their own.
 *
 * Each query helper takes a pooled connection for one round trip and gives it back. For several
 * statements that must see each other or succeed together use `transaction`; for session state
 * (advisory locks, SET, LISTEN) use `withConnection`. Called inside a `transaction` callback of this
 * service (same async context), the helpers join that transaction instead: they run on its
 * connection, through its handle.
 */
export class DatabaseService extends Queryable {
  private readonly logger: Logger;
  /** Named prepared statements per connection for autocommit statements; none behind a transaction pooler. */
  private readonly statements: StatementCache;
  /** Autocommit statements pipelined when the pool is saturated (the pipelining option): reads by default. */
  private readonly pipeline?: PipelinedRunner;
  /** pipelining true: writes share busy connections too, and calls with a signal (never cancelled on the server then). */
  private readonly pipelineWrites: boolean;
  private readonly resetAfter = (client: pg.PoolClient) => this.resetSession(this.db, client);
  /** The dedicated LISTEN connection, opened by the first listen() (listen/). */
  private listener?: NotificationListener;
  /** Setting names given so far: every later statement sets each (empty when not given). */
  private readonly settingsInUse = new SettingsInUse();

  constructor(db: DatabasePool) {
    super(db);
    this.logger = new Logger(db.config.name ? `SecureDatabase:${db.config.name}` : 'SecureDatabase');
    this.statements = new StatementCache(db.config.statementCacheSize);
    this.pipelineWrites = db.config.pipelining === true;
    db.observer?.watchStatementCache(this.statements);
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

  /** Inside one of this service's transaction callbacks, that transaction's handle (its connection, never a second one). */
  protected override runner(): Queryable {
    return joinedTransaction(this.db) ?? this;
  }

  protected async run(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    this.db.guardStatement(text);
    const facts = statementFacts(text);
    if (facts.transactionControl) throw transactionControlRefused();
    // The settings ahead of the statement, in its round trip and implicit transaction.
    const settingsStatement = this.settingsInUse.statement(shape.settings);
    if (!settingsStatement) return this.runAutocommit(text, values, shape, facts.read);
    shape.settingsStatement = settingsStatement; // the call's own shape (query events read its route)
    const result = await this.runAutocommit(text, values, shape, facts.read);
    this.settingsInUse.remember(shape.settings);
    return result;
  }

  private async runAutocommit(text: string, values: readonly unknown[] | undefined, shape: ResultShape, read: boolean): Promise<pg.QueryResult> {
    // Behind a transaction pooler: the SET LOCAL timeouts ahead of the statement, in its round trip.
    const envelope = this.db.statementEnvelope;
    if (this.pipeline && (this.pipelineWrites || (read && shape.signal === undefined))) {
      // Pipelined: never cancelled on the server (see CallOptions.signal); the caller is let go at the abort.
      // By default (`reads`) a call with a signal keeps its own connection, so its abort cancels on the server.
      return abandonOnAbort(this.pipeline.run(text, values, shape, this.statements, this.resetAfter), shape.signal);
    }
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
   * that cannot run there (25001 on every supported major: VACUUM, CREATE INDEX CONCURRENTLY … in a
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

  protected async *streamRows<R>(text: string, values: readonly unknown[] | undefined, batchSize: number, call: ResolvedCallOptions): AsyncGenerator<R> {
    this.db.guardStatement(text);
    if (statementFacts(text).transactionControl) throw transactionControlRefused();
    const { signal, timeoutMs } = call;
    const settingsStatement = this.settingsInUse.statement(call.settings);
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
      // A per-call timeout or settings need a transaction to be SET LOCAL in: the stream then gets one, as behind a pooler.
      if (!this.db.transactionPooled && timeoutMs === undefined && !settingsStatement) {
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
        if (settingsStatement) {
          await client.query(settingsStatement.text, settingsStatement.values as string[]);
          this.settingsInUse.remember(call.settings);
        }
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
   * transaction (see TransactionOptions.retries). Inside `fn` the service's own helpers join the
   * transaction (same connection), and `transaction` called there is a nested transaction: a
   * savepoint, as `tx.transaction` (which never retries on its own; only the outermost reruns).
   */
  async transaction<T>(fn: (tx: ScopedConnection) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const joined = joinedTransaction(this.db);
    if (joined) return joined.transaction(fn, options);
    const plan = planTransaction(options);
    const call = callOptionsOf(options);
    // Named statements only where a rerun is allowed: one the server cannot use (a stale plan) aborts the transaction.
    const statements = plan.retries > 0 ? this.statements : undefined;
    const attempt = { cacheFailed: false };
    for (let n = 0; ; n++) {
      attempt.cacheFailed = false;
      try {
        return await this.transactionAttempt(fn, beginWithTimeout(this.db.beginStatement(plan.begin), call.timeoutMs), options, call, statements, attempt);
      } catch (error) {
        if (n >= plan.retries || !(isRetryableTransactionError(error) || attempt.cacheFailed)) throw error;
      }
      // A statement-cache failure is ours, not contention: rerun at once (its statements are parsed again).
      if (!attempt.cacheFailed) await sleep(retryDelayMs(n));
    }
  }

  private async transactionAttempt<T>(
    fn: (tx: ScopedConnection) => Promise<T>,
    begin: string,
    options: TransactionOptions,
    call: ResolvedCallOptions,
    statements: StatementCache | undefined,
    attempt: { cacheFailed: boolean },
  ): Promise<T> {
    const { signal, settings } = call;
    const client = await acquireUnlessAborted(this.db, signal);
    const tx = new ScopedConnection(this.db, client, 'transaction', options, signal, settings);
    if (statements) tx.useStatementCache(statements);
    try {
      // BEGIN, and the settings every statement of the transaction runs with (SET LOCAL: they end with it),
      // are sent with the first statement: one round trip fewer.
      const settingsStatement = this.settingsInUse.statement(settings);
      tx.deferBegin(begin, settingsStatement);
      let result: T;
      try {
        result = await runInTransactionScope(this.db, tx, fn);
        throwIfAborted(signal); // aborted: rolled back, even when the callback swallowed the cancellation
      } catch (error) {
        await this.rollback(tx, client);
        throw error;
      }
      if (tx.doomed) {
        await this.rollback(tx, client);
        throw new QueryError('a nested transaction could not be rolled back to its savepoint, so the transaction was rolled back instead of committed');
      }
      const commit = await tx[CONTROL]('COMMIT');
      // COMMIT of a transaction in which a statement failed (and `fn` caught the error) rolls back.
      if (commit.command === 'ROLLBACK') {
        throw tx.firstError ?? new InFailedTransactionError('the transaction had failed and was rolled back instead of committed', { sqlstate: '25P02' });
      }
      this.settingsInUse.remember(settings); // the server accepted them (they went out with the first statement, if any)
      return result;
    } finally {
      attempt.cacheFailed = tx.statementCacheFailed;
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
   * Runs `fn` with `settings` (custom `prefix.name` settings, e.g. `{ 'app.tenant_id': tenantId }`)
   * applied to every statement the module runs inside it, through AsyncLocalStorage: the query
   * helpers, streams, transactions and withConnection, of this and every other connection of the
   * module (named connections, replicas). Each statement gets them transaction-locally in its own
   * round trip (see CallOptions.settings), so they never reach another caller's statements. Nested
   * calls merge (inner values win); a call's own `{ settings }` merge over them. Work `fn` leaves
   * running after it settles runs without them (it sees the settings empty), so await it inside.
   */
  async withSettings<T>(settings: DatabaseSettings, fn: () => Promise<T>): Promise<T> {
    return runWithSettings(resolveSettings(settings), fn);
  }

  /**
   * Runs `fn` with one connection of its own, for session-level work (advisory locks, SET, temporary
   * tables, LISTEN). Before the connection returns to the pool its session is reset with DISCARD
   * ALL (which also releases advisory locks); when that fails the connection is destroyed instead.
   * Settings from DATABASE_URL and the module (timeouts, application_name) survive the reset; a
   * transaction left open makes the reset fail, so that connection is destroyed. Unlike inside
   * `transaction`, the service's calls in `fn` do not join this connection (session work often
   * coordinates with other connections): each takes a second connection from the same pool.
   * Refused inside a transaction callback (see refuseInsideTransaction).
   *
   * Behind a transaction pooler there is no session to hold: the work runs on a connection of the
   * DATABASE_DIRECT_URL pool, or is refused (SessionUnavailableError) when none is configured.
   */
  async withConnection<T>(fn: (connection: ScopedConnection) => Promise<T>, options: CallOptions = {}): Promise<T> {
    this.refuseInsideTransaction();
    const { signal, timeoutMs, settings } = callOptionsOf(options ?? {});
    const db = this.sessionPool();
    const client = await acquireUnlessAborted(db, signal);
    const connection = new ScopedConnection(db, client, 'session', {}, signal, settings);
    try {
      if (timeoutMs !== undefined) await connection[CONTROL](sessionStatementTimeoutSql(timeoutMs));
      // For the session (the callback's), until DISCARD ALL resets it on release.
      const settingsStatement = this.settingsInUse.statement(settings, false);
      if (settingsStatement) {
        await connection[CONTROL](settingsStatement);
        this.settingsInUse.remember(settings);
      }
      return await fn(connection);
    } finally {
      connection.end();
      if (!connection.broken) await this.resetSession(db, client);
      db.release(client);
    }
  }

  /**
   * Calls `handler` for each notification on `channel` (exact name, case kept) and resolves once the
   * server listens. All channels share one dedicated connection, opened through the pool's connect path
   * and reopened with backoff when lost; `onReconnect` then says notifications may have been missed.
   * Behind a transaction pooler it needs DATABASE_DIRECT_URL (SessionUnavailableError otherwise).
   */
  listen(channel: string, handler: NotificationHandler, options?: ListenOptions): Promise<Subscription> {
    return (this.listener ??= new NotificationListener(this.db)).listen(channel, handler, options);
  }

  /** pg_notify(channel, payload) with both bound; joins a transaction callback's transaction (delivered at its COMMIT). */
  async notify(channel: string, payload?: string): Promise<void> {
    const [text, values] = notifyCall(channel, payload);
    await this.execute(text, values);
  }

  /**
   * Bulk insert with COPY … FROM STDIN (copy/copy-from.ts): `rows` (arrays of values in `columns`'
   * order, from any iterable or async iterable) streamed with backpressure, encoded in the text
   * format; resolves to the row count. Inside a transaction callback it joins that transaction.
   * A bad value is CopyDataError (400) naming the row; a copy that does not complete discards its
   * connection and keeps no row.
   */
  copyFrom(table: CopyTable, columns: readonly string[], rows: CopyRows, options?: CopyFromOptions): Promise<number> {
    const joined = joinedTransaction(this.db);
    if (joined) return joined.copyFrom(table, columns, rows, options);
    // The settings (and those in use) in the COPY's transaction, as for any statement.
    return copyFromPool(this.db, table, columns, rows, options, this.settingsInUse.statement(callOptionsOf(options ?? {}).settings));
  }

  /** COPY (query) TO STDOUT (copy/copy-to.ts): rows of text values, or `{ chunks: true }` the raw bytes; joins a transaction like copyFrom. */
  copyTo(query: string | SqlFragment, options: CopyToOptions & { chunks: true }): AsyncGenerator<Buffer>;
  copyTo(query: string | SqlFragment, options?: CopyToOptions): AsyncGenerator<CopyRow>;
  copyTo(query: string | SqlFragment, options?: CopyToOptions): AsyncGenerator<Buffer> | AsyncGenerator<CopyRow> {
    const joined = joinedTransaction(this.db);
    if (joined) return joined.copyTo(query, options);
    const settings = this.settingsInUse.statement(callOptionsOf(options ?? {}).settings);
    return copyToResult(query, options, (statement, checked) => copyToPool(this.db, statement, checked, settings));
  }

  private sessionPool(): DatabasePool {
    return this.db.sessionPool(
      'withConnection needs a server session of its own, which a transaction pooler does not give (each transaction may run on another server connection, shared with other clients); ' +
        'or use transaction() for work that fits in one transaction',
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
   * withConnection inside a transaction callback would take a second connection: its work would
   * not see the transaction's and would commit on its own, and with every pooled connection held
   * by such a callback the pool deadlocks. Nor can it run on the transaction's connection, whose
   * session it could not reset (DISCARD ALL cannot run in a transaction). So it is refused.
   */
  private refuseInsideTransaction(): void {
    if (joinedTransaction(this.db)) {
      throw new InvalidQueryError(
        'withConnection was called inside a transaction callback: it would take a second connection, outside the transaction. Use the transaction for the work (SET LOCAL, pg_advisory_xact_lock), or call withConnection before or after the transaction',
      );
    }
  }
}

function transactionControlRefused(): InvalidQueryError {
  return new InvalidQueryError(
    'BEGIN, COMMIT and ROLLBACK cannot be sent through the query helpers: each call may run on another pooled connection (and would capture other callers). Use db.transaction(async (tx) => …), which runs them on one connection',
  );
}
