import type pg from 'pg';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import type { EnvelopeStatement, StatementEnvelope } from '../pooler/server-settings.js';
import { copyTimeoutMs } from '../copy/copy-connection.js';
import { type CopyFromOptions, type CopyRows, copyRowsOn } from '../copy/copy-from.js';
import { type CopyTable, copyFromStatement } from '../copy/copy-statement.js';
import { type CopyRow, type CopyToOptions, copyChunksOn, copyToResult } from '../copy/copy-to.js';
import type { SqlFragment } from './sql.js';
import { type CallOptions, type ResolvedCallOptions, callOptionsOf, cancellable, eitherSignal, refuseInTransaction, throwIfAborted } from './cancellation.js';
import { type BoundStatement, type ResolvedSettings, setConfigStatement } from '../settings/database-settings.js';
import { cursorRows } from './cursor-rows.js';
import { Queryable, type ResultShape, runStatement } from './queryable.js';
import { type StatementCache, statementCacheFailure } from './statement-cache.js';
import { changesSession, statementFacts } from './statement-facts.js';
import { type TransactionOptions, refuseNestedCharacteristics } from './transaction-options.js';
import { runInTransactionScope } from './transaction-scope.js';

/**
 * Key of the method that sends the module's own fixed statements (BEGIN …, COMMIT, ROLLBACK, SAVEPOINT
 * sp_n …) over the simple protocol. Not exported from the package: the simple protocol runs several
 * statements in one text, so callers only ever get the extended-protocol helpers (and the clearly
 * named sql.unsafeRaw).
 */
export const CONTROL = Symbol('control');

/** What every handle on one connection shares: a transaction's handle and those of its nested transactions. */
interface ConnectionState {
  broken: boolean;
  sessionChanged: boolean;
  /** Savepoints opened so far on this connection: they are named sp_1, sp_2 … (never from input). */
  savepoints: number;
  /** A savepoint could not be rolled back to: its work may still be in the transaction, which must not commit. */
  doomed: boolean;
  /** A stream's consumer stalled past the idle deadline: the connection was ended, and every later use gets this. */
  idledOut?: SecureDatabaseError;
  /** The settings the transaction (or the session) was given: its statements all run with them. */
  settings?: ResolvedSettings;
  /**
   * The transaction's BEGIN (with its SET LOCALs) and settings statement, not sent yet: they travel in
   * the same write as the first statement, saving a round trip. Never sent if nothing runs.
   */
  pendingBegin?: EnvelopeStatement[];
  /** The service's statement cache, in a transaction that may rerun (retries > 0): its statements are named. */
  statements?: StatementCache;
  /** The server could not use a named statement (stale plan, or a name it does not have): the transaction must rerun. */
  statementCacheFailed?: boolean;
}

/** What COMMIT or ROLLBACK of a transaction in which nothing was sent (its BEGIN neither) reports: nothing to end. */
function nothingBegun(command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, rows: [], fields: [] };
}

/**
 * The handle `transaction` and `withConnection` pass to their callback: the query helpers, on the one
 * connection the callback holds. It stops working when the callback's scope ends, so a handle kept
 * around can never query a connection that went back to the pool and now belongs to someone else.
 */
export class ScopedConnection extends Queryable {
  /** False once the callback's scope ended. */
  private live = true;
  /** @internal The first error the server reported on this handle (a failed transaction's cause). */
  firstError?: SecureDatabaseError;
  /** A stream is reading on this connection: anything else sent now would queue behind it for ever. */
  private streaming = false;
  /** A nested transaction is open on this handle: a statement sent here now would land inside its savepoint. */
  private nestedOpen = false;

  /**
   * @internal Made by DatabaseService: for `transaction` (the module owns BEGIN/COMMIT/ROLLBACK; the
   * options it began with) or `withConnection` (the callback owns the session, transactions included).
   */
  constructor(
    db: DatabasePool,
    private readonly connection: pg.PoolClient,
    private readonly scope: 'transaction' | 'session',
    private readonly transactionOptions: TransactionOptions = {},
    /** The signal of the whole transaction / withConnection: once aborted, the handle sends nothing more. */
    private readonly signal?: AbortSignal,
    settings?: ResolvedSettings,
    private readonly state: ConnectionState = { broken: false, sessionChanged: false, savepoints: 0, doomed: false, settings },
  ) {
    super(db);
  }

  /** @internal The connection broke: it is destroyed on release, and no ROLLBACK or session reset is tried on it. */
  get broken(): boolean {
    return this.state.broken;
  }

  set broken(broken: boolean) {
    this.state.broken = broken;
  }

  /** @internal A statement changed session state (SET, RESET, LISTEN …): reset the session before release. */
  get sessionChanged(): boolean {
    return this.state.sessionChanged;
  }

  protected override get inTransaction(): boolean {
    return this.scope === 'transaction';
  }

  /** @internal A nested transaction's work could not be undone: the transaction must roll back. */
  get doomed(): boolean {
    return this.state.doomed;
  }

  /**
   * @internal Names this transaction's statements with the service's statement cache (Parse once per
   * connection, Bind/Execute after, no Describe once described). A named statement the server cannot use
   * (0A000 after a schema change, 26000/42P05) fails and aborts the transaction: the caller reruns it whole.
   */
  useStatementCache(statements: StatementCache): void {
    if (statements.enabled) this.state.statements = statements;
  }

  /** @internal A named statement failed as only named ones do: the whole transaction is to be run again. */
  get statementCacheFailed(): boolean {
    return this.state.statementCacheFailed === true;
  }

  /** @internal The transaction's BEGIN goes out with its first statement (or savepoint, stream, COMMIT: see pendingBegin). */
  deferBegin(begin: string, settingsStatement?: BoundStatement): void {
    // Module texts joined by `; ` (beginWithTimeout, beginStatement): each is one fixed statement of the envelope.
    const statements: EnvelopeStatement[] = begin.split('; ');
    if (settingsStatement) statements.push(settingsStatement);
    this.state.pendingBegin = statements;
  }

  /** The pending BEGIN as fixed statements ahead of the caller's, in its write; consumed (sent once). */
  private takeBegin(): StatementEnvelope | undefined {
    const begin = this.state.pendingBegin;
    if (begin === undefined) return undefined;
    this.state.pendingBegin = undefined;
    return { before: begin, after: [] };
  }

  /** A pending BEGIN sent on its own, for what cannot carry it (a cursor, COPY). */
  private async openTransaction(): Promise<void> {
    const begin = this.state.pendingBegin;
    if (begin === undefined) return;
    this.state.pendingBegin = undefined;
    await this.sendPending(begin);
  }

  /** Sends the pending BEGIN on its own (before a cursor, or a savepoint after bound settings). */
  private async sendPending(begin: readonly EnvelopeStatement[]): Promise<void> {
    for (const statement of begin) await this.onClient(this.connection, (client) => (typeof statement === 'string' ? client.query(statement) : client.query(statement.text, statement.values as string[])), false);
  }

  /** One statement, named in a transaction that uses the statement cache; a failure only named statements have is noted. */
  private sendOn(client: pg.PoolClient, text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    const statements = this.scope === 'transaction' ? this.state.statements : undefined;
    const named = statements?.nameFor(client, text);
    const running = runStatement(client, text, values, shape, this.takeBegin(), named);
    if (!named) return running;
    shape.cached = named.parsed === true;
    return running.catch((error: unknown) => {
      const failure = statementCacheFailure(error);
      if (failure !== undefined) {
        if (failure === 'stale') statements!.stale(client, named.name);
        else statements!.distrust(client);
        this.state.statementCacheFailed = true; // the transaction reruns whole, whatever the callback does with this error
      }
      throw error;
    });
  }

  protected async run(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    this.guard(text);
    shape = this.withSettingsOf(shape);
    // Before BEGIN is sent the connection still looks idle: a per-statement timeout would last to the transaction's end.
    if (this.state.pendingBegin !== undefined) refuseInTransaction(this.connection, shape, true);
    const signal = eitherSignal(this.signal, shape.signal);
    const result = await this.onClient(
      this.usableClient(),
      (client) => cancellable(this.db, client, signal, () => this.sendOn(client, text, values, shape)),
      true,
    );
    if (changesSession(text, result.command)) this.state.sessionChanged = true;
    return result;
  }

  protected async *streamRows<R>(text: string, values: readonly unknown[] | undefined, batchSize: number, call: ResolvedCallOptions): AsyncGenerator<R> {
    this.guard(text);
    if (!sameSettings(this.state.settings, call.settings)) {
      throw new InvalidQueryError(`${SETTINGS_DIFFER} a stream cannot have settings of its own on a connection handle: pass them to transaction(fn, { settings }) or withConnection(fn, { settings })`);
    }
    const signal = eitherSignal(this.signal, call.signal);
    throwIfAborted(signal);
    if (call.timeoutMs !== undefined) throw new InvalidQueryError('timeoutMs cannot be set for one stream on a connection handle: pass it to transaction(fn, { timeoutMs }) or withConnection(fn, { timeoutMs })');
    const client = this.usableClient();
    await this.openTransaction(); // a cursor needs the transaction open first
    // A cursor reports no command tag to look at: the text decides (CREATE TABLE … AS runs through one too).
    if (statementFacts(text).sessionText) this.state.sessionChanged = true;
    this.streaming = true;
    try {
      // The connection is the callback's, not the stream's: on the idle deadline it is ended (the server
      // rolls the transaction back) and every handle on it refuses everything after, COMMIT included,
      // so a transaction never commits half a read. Session state of withConnection is gone with it.
      const onIdle = {
        ended: (error: SecureDatabaseError) => {
          this.state.idledOut = error;
          this.firstError ??= error;
        },
      };
      yield* cursorRows<R>(client, this.db, text, values, batchSize, onIdle, () => (this.broken = true), signal);
    } catch (error) {
      this.firstError ??= error as SecureDatabaseError;
      throw error;
    } finally {
      this.streaming = false;
    }
  }

  /** COPY … FROM STDIN on this connection (see DatabaseService.copyFrom); a copy that fails ends the connection, and with it the transaction. */
  async copyFrom(table: CopyTable, columns: readonly string[], rows: CopyRows, options: CopyFromOptions = {}): Promise<number> {
    const statement = copyFromStatement(table, columns);
    const signal = this.copySignal(options);
    const client = this.usableClient();
    await this.openTransaction(); // COPY runs in the transaction: its BEGIN first
    this.streaming = true;
    try {
      return await copyRowsOn(this.db, client, statement, columns.length, rows, signal, this.copyTimeoutMs());
    } catch (error) {
      this.afterCopyFailure(client, error);
      throw error;
    } finally {
      this.streaming = false;
    }
  }

  /** COPY (query) TO STDOUT on this connection (see DatabaseService.copyTo); leaving it before its end ends the connection. */
  copyTo(query: string | SqlFragment, options: CopyToOptions & { chunks: true }): AsyncGenerator<Buffer>;
  copyTo(query: string | SqlFragment, options?: CopyToOptions): AsyncGenerator<CopyRow>;
  copyTo(query: string | SqlFragment, options?: CopyToOptions): AsyncGenerator<Buffer> | AsyncGenerator<CopyRow> {
    return copyToResult(query, options, (statement, checked) => this.copyChunks(statement, checked));
  }

  private async *copyChunks(statement: string, options: CopyToOptions): AsyncGenerator<Buffer> {
    const signal = this.copySignal(options);
    const client = this.usableClient();
    await this.openTransaction(); // COPY runs in the transaction: its BEGIN first
    this.streaming = true;
    try {
      yield* copyChunksOn(this.db, client, statement, signal, this.copyTimeoutMs());
    } catch (error) {
      this.afterCopyFailure(client, error);
      throw error;
    } finally {
      if (this.db.isUnusable(client)) this.broken = true; // left before its end: the connection was discarded
      this.streaming = false;
    }
  }

  private copySignal(options: CallOptions): AbortSignal | undefined {
    if (options?.timeoutMs !== undefined) throw new InvalidQueryError('timeoutMs cannot be set for one COPY on a connection handle: pass it to transaction(fn, { timeoutMs }) or withConnection(fn, { timeoutMs })');
    // A COPY carries no settings of its own: it runs with the connection's.
    if (!sameSettings(this.state.settings, callOptionsOf(options ?? {}).settings)) {
      throw new InvalidQueryError(`${SETTINGS_DIFFER} a COPY cannot have settings of its own on a connection handle: pass them to transaction(fn, { settings }) or withConnection(fn, { settings })`);
    }
    const signal = eitherSignal(this.signal, options?.signal);
    throwIfAborted(signal);
    return signal;
  }

  /** The transaction's timeoutMs (withConnection's is a session setting the module does not see here), else the module's statement timeout. */
  private copyTimeoutMs(): number {
    return copyTimeoutMs(this.db, this.transactionOptions.timeoutMs);
  }

  private afterCopyFailure(client: pg.PoolClient, error: unknown): void {
    if (this.db.isUnusable(client)) this.broken = true;
    if (error instanceof Error && 'code' in error) this.firstError ??= error as SecureDatabaseError;
  }

  /**
   * Runs `fn` in a nested transaction: a SAVEPOINT on this connection, RELEASEd when `fn` resolves,
   * rolled back to (and released) when it throws; the error propagates and this transaction stays
   * usable. `fn` gets a handle of its own, valid while it runs (this one refuses statements
   * meanwhile: they would land inside the savepoint). A nested transaction never retries on its own:
   * a serialization failure or deadlock propagates to the outermost transaction, which reruns all of
   * its callback. It cannot change the isolation level or READ ONLY: `options` may only repeat those
   * of the outermost transaction (its retries are ignored).
   */
  async transaction<T>(fn: (tx: ScopedConnection) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    if (this.scope !== 'transaction') {
      throw new InvalidQueryError('A withConnection handle is not in a transaction() of the module: send BEGIN and COMMIT through it, or use db.transaction()');
    }
    refuseNestedCharacteristics(this.transactionOptions, options);
    const client = this.usableClient();
    const savepoint = `sp_${++this.state.savepoints}`;
    const nested = new ScopedConnection(this.db, client, 'transaction', this.transactionOptions, this.signal, this.state.settings, this.state);
    this.nestedOpen = true;
    try {
      await this[CONTROL](`SAVEPOINT ${savepoint}`);
      let result: T;
      try {
        result = await runInTransactionScope(this.db, nested, fn);
      } catch (error) {
        await this.rollbackToSavepoint(savepoint);
        throw error;
      }
      try {
        await this[CONTROL](`RELEASE SAVEPOINT ${savepoint}`);
      } catch (error) {
        // A statement in the savepoint failed and `fn` caught it: the server refuses RELEASE (25P02).
        // As COMMIT does for the outermost, the savepoint's work is undone and that failure reported.
        if (this.broken) throw error;
        await this.rollbackToSavepoint(savepoint);
        throw nested.firstError ?? error;
      }
      return result;
    } finally {
      this.nestedOpen = false;
    }
  }

  private async rollbackToSavepoint(savepoint: string): Promise<void> {
    if (this.broken) return; // the whole transaction is gone with the connection
    try {
      await this[CONTROL](`ROLLBACK TO SAVEPOINT ${savepoint}; RELEASE SAVEPOINT ${savepoint}`);
    } catch {
      // The savepoint's work may still be part of the transaction: it must never commit, nor the connection be reused.
      this.state.doomed = true;
      this.db.markUnusable(this.connection);
    }
  }

  /**
   * The transaction's (or session's) settings already apply to every statement on this connection. A
   * call that asks for others: refused in a transaction (SET LOCAL would last to its end, so they
   * could not be undone after the statement); on a withConnection handle sent with the statement, in
   * its own implicit transaction (refused inside a transaction the callback began).
   */
  private withSettingsOf(shape: ResultShape): ResultShape {
    if (sameSettings(this.state.settings, shape.settings)) return shape.settings ? { ...shape, settings: undefined } : shape;
    if (this.scope === 'transaction') {
      throw new InvalidQueryError(`${SETTINGS_DIFFER} pass them to transaction(fn, { settings }) (or db.withSettings around it), or run the statement outside the transaction`);
    }
    return { ...shape, settingsStatement: setConfigStatement(shape.settings!) };
  }

  private guard(text: string): void {
    this.db.guardStatement(text);
    if (this.scope === 'transaction' && statementFacts(text).transactionControl) {
      throw new InvalidQueryError(
        "BEGIN, COMMIT and ROLLBACK of a transaction() are the module's: return from the callback to commit, throw to roll back, call tx.transaction() for a savepoint (SAVEPOINT and ROLLBACK TO SAVEPOINT are allowed)",
      );
    }
  }

  /** @internal Sends one of the module's fixed statements, also after the callback ended (COMMIT, ROLLBACK). */
  [CONTROL](statement: string | BoundStatement): Promise<pg.QueryResult> {
    // After a stream's idle deadline the connection is gone: COMMIT (or anything) reports why.
    if (this.state.idledOut) return Promise.reject(this.state.idledOut);
    const begin = this.state.pendingBegin;
    if (begin !== undefined) {
      this.state.pendingBegin = undefined;
      // Nothing ran in the transaction: COMMIT and ROLLBACK have nothing to end, so nothing is sent at all.
      if (statement === 'COMMIT' || statement === 'ROLLBACK') return Promise.resolve(nothingBegun(statement));
      // SAVEPOINT …: one round trip with the BEGIN when that is module text alone.
      if (typeof statement === 'string' && begin.every((each) => typeof each === 'string')) statement = `${begin.join('; ')}; ${statement}`;
      else return this.sendPending(begin).then(() => this[CONTROL](statement));
    }
    // A bound statement (the module's set_config with the caller's settings) goes over the extended protocol.
    return this.onClient(this.connection, (client) => (typeof statement === 'string' ? client.query(statement) : client.query(statement.text, statement.values as string[])), false);
  }

  private usableClient(): pg.PoolClient {
    if (!this.live) {
      throw new InvalidQueryError('This connection handle was used after its transaction or withConnection callback ended');
    }
    if (this.state.idledOut) throw this.state.idledOut;
    if (this.streaming) {
      throw new InvalidQueryError('A stream is still reading on this connection: finish or break out of its loop before sending another query');
    }
    if (this.nestedOpen) {
      throw new InvalidQueryError(
        "A nested transaction is open on this connection: query through the handle its callback received (or the service, which joins it), or await the nested transaction first",
      );
    }
    return this.connection;
  }

  private async onClient(client: pg.PoolClient, query: (client: pg.PoolClient) => Promise<pg.QueryResult>, callers: boolean): Promise<pg.QueryResult> {
    try {
      return await query(client);
    } catch (error) {
      // Also when a cancel request could not be sent: the pool destroyed the connection.
      if (isConnectionUnusable(error) || this.db.isUnusable(client)) this.broken = true;
      this.db.discardIfBroken(client, error);
      const mapped = this.db.mapError(error);
      if (callers) this.firstError ??= mapped;
      throw mapped;
    }
  }

  /** @internal Detaches the handle from its connection (before the module's COMMIT/ROLLBACK and the release). */
  end(): void {
    this.live = false;
  }
}

const SETTINGS_DIFFER = 'settings were given that this connection does not already run with (its transaction or withConnection was given others):';

/** True when every setting `call` asks for already has that value on the connection (`held`). */
function sameSettings(held: ResolvedSettings | undefined, call: ResolvedSettings | undefined): boolean {
  if (!call) return true;
  for (const [name, value] of call) if (held?.get(name) !== value) return false;
  return true;
}
