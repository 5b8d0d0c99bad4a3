import type pg from 'pg';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { type CallOptions, cancellable, eitherSignal, throwIfAborted } from './cancellation.js';
import { cursorRows } from './cursor-rows.js';
import { Queryable, type ResultShape, runStatement } from './queryable.js';
import { changesSession, statementFacts } from './statement-facts.js';

/**
 * Key of the method that sends the module's own fixed statements (BEGIN …, COMMIT, ROLLBACK) over the
 * simple protocol. Not exported from the package: the simple protocol runs several statements in one
 * text, so callers only ever get the extended-protocol helpers (and the clearly named sql.unsafeRaw).
 */
export const CONTROL = Symbol('control');

/**
 * The handle `transaction` and `withConnection` pass to their callback: the query helpers, on the one
 * connection the callback holds. It stops working when the callback's scope ends, so a handle kept
 * around can never query a connection that went back to the pool and now belongs to someone else.
 */
export class ScopedConnection extends Queryable {
  private client?: pg.PoolClient;
  /** @internal The connection broke: it is destroyed on release, and no ROLLBACK or session reset is tried on it. */
  broken = false;
  /** @internal A statement changed session state (SET, RESET, LISTEN …): reset the session before release. */
  sessionChanged = false;
  /** @internal The first error the server reported on this handle (a failed transaction's cause). */
  firstError?: SecureDatabaseError;
  /** A stream is reading on this connection: anything else sent now would queue behind it for ever. */
  private streaming = false;
  /** A stream's consumer stalled past the idle deadline: the connection was ended, and every later use gets this. */
  private idledOut?: SecureDatabaseError;

  /**
   * @internal Made by DatabaseService: for `transaction` (the module owns BEGIN/COMMIT/ROLLBACK) or
   * `withConnection` (the callback owns the session, transactions included).
   */
  constructor(
    db: DatabasePool,
    client: pg.PoolClient,
    private readonly scope: 'transaction' | 'session',
    /** The signal of the whole transaction / withConnection: once aborted, the handle sends nothing more. */
    private readonly signal?: AbortSignal,
  ) {
    super(db);
    this.client = client;
  }

  protected async run(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    this.guard(text);
    const signal = eitherSignal(this.signal, shape.signal);
    const result = await this.onClient((client) => cancellable(this.db, client, signal, () => runStatement(client, text, values, shape)));
    if (changesSession(text, result.command)) this.sessionChanged = true;
    return result;
  }

  protected async *streamRows<R>(text: string, values: readonly unknown[] | undefined, batchSize: number, call: CallOptions): AsyncGenerator<R> {
    this.guard(text);
    const signal = eitherSignal(this.signal, call.signal);
    throwIfAborted(signal);
    if (call.timeoutMs !== undefined) throw new InvalidQueryError('timeoutMs cannot be set for one stream on a connection handle: pass it to transaction(fn, { timeoutMs }) or withConnection(fn, { timeoutMs })');
    const client = this.usableClient();
    // A cursor reports no command tag to look at: the text decides (CREATE TABLE … AS runs through one too).
    if (statementFacts(text).sessionText) this.sessionChanged = true;
    this.streaming = true;
    try {
      // The connection is the callback's, not the stream's: on the idle deadline it is ended (the server
      // rolls the transaction back) and the handle refuses everything after, COMMIT included, so a
      // transaction never commits half a read. Session state of withConnection is gone with it.
      const onIdle = {
        ended: (error: SecureDatabaseError) => {
          this.idledOut = error;
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

  private guard(text: string): void {
    this.db.guardStatement(text);
    if (this.scope === 'transaction' && statementFacts(text).transactionControl) {
      throw new InvalidQueryError(
        'BEGIN, COMMIT and ROLLBACK of a transaction() are the module\'s: return from the callback to commit, throw to roll back (SAVEPOINT and ROLLBACK TO SAVEPOINT are allowed)',
      );
    }
  }

  /** @internal */
  [CONTROL](statement: string): Promise<pg.QueryResult> {
    return this.onClient((client) => client.query(statement));
  }

  private usableClient(): pg.PoolClient {
    if (this.client === undefined) {
      throw new InvalidQueryError('This connection handle was used after its transaction or withConnection callback ended');
    }
    if (this.idledOut) throw this.idledOut;
    if (this.streaming) {
      throw new InvalidQueryError('A stream is still reading on this connection: finish or break out of its loop before sending another query');
    }
    return this.client;
  }

  private async onClient(query: (client: pg.PoolClient) => Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    const client = this.usableClient();
    try {
      return await query(client);
    } catch (error) {
      // Also when a cancel request could not be sent: the pool destroyed the connection.
      if (isConnectionUnusable(error) || this.db.isUnusable(client)) this.broken = true;
      this.db.discardIfBroken(client, error);
      const mapped = this.db.mapError(error);
      this.firstError ??= mapped;
      throw mapped;
    }
  }

  /** @internal Detaches the handle from its connection (before the connection is released). */
  end(): void {
    this.client = undefined;
  }
}
