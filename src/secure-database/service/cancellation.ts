import type pg from 'pg';
import { QueryCancelledError } from '../errors/cancellation.errors.js';
import { InvalidQueryError } from '../errors/query.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import type { StatementEnvelope } from '../pooler/server-settings.js';
import { type DatabaseSettings, type ResolvedSettings, mergeSettings, resolveSettings } from '../settings/database-settings.js';
import { ambientSettings } from '../settings/settings-scope.js';

/** Options every query helper, `stream`, `transaction` and `withConnection` accept. */
export interface CallOptions {
  /**
   * Cancels the call when it aborts (e.g. `@RequestSignal()`: the HTTP client went away). Already
   * aborted: rejects at once, nothing sent, no connection taken. While waiting for a connection: rejects
   * at once; the connection goes straight back when it comes. While the statement runs on a connection
   * of its own: the server is told to cancel it (a CancelRequest over TLS), the call rejects with
   * QueryCancelledError, and the connection returns to the pool only once the cancel is settled. A
   * statement that completed before the cancel reached it resolves with its result (a write committed:
   * reporting it cancelled would invite a retry that makes it twice). A pipelined statement (sharing its
   * connection with others) is never cancelled on the server, since the cancel would hit whichever
   * statement runs then: the caller is rejected at once and the result, when it comes, discarded (a
   * write may still commit). A transaction whose signal aborts rolls back, whatever its callback does.
   */
  signal?: AbortSignal;
  /**
   * statement_timeout for this statement only (for `transaction`: each statement of it; for
   * `withConnection`: the session), in milliseconds, a whole number ≥ 1. Over it: StatementTimeoutError
   * (DB_STATEMENT_TIMEOUT). Sent as SET LOCAL in the statement's own round trip and implicit
   * transaction, so it never outlives the statement. On a transaction's handle use transaction(fn,
   * { timeoutMs }) (or SET LOCAL) instead: a per-statement value cannot be undone inside a transaction.
   */
  timeoutMs?: number;
  /**
   * Custom settings (`prefix.name`, e.g. `{ 'app.tenant_id': '42' }`) for this call's statements, read
   * by Row-Level Security policies through current_setting(). Applied transaction-locally
   * (set_config(name, value, true), names and values bound) in the statement's own round trip, so they
   * end with it on whatever connection it ran; merged over those of an enclosing `db.withSettings`.
   * For `transaction` every statement of it; for `withConnection` its session. Inside a transaction the
   * settings are the transaction's: a call there that asks for others is refused. See settings/.
   */
  settings?: DatabaseSettings;
}

/** CallOptions validated: the settings merged over the enclosing withSettings scope's. */
export interface ResolvedCallOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  settings?: ResolvedSettings;
}

// PostgreSQL's statement_timeout is an int in milliseconds.
const MAX_TIMEOUT_MS = 2_147_483_647;

const NO_CALL_OPTIONS: ResolvedCallOptions = Object.freeze({});

/** The call options in `options` (a validated options object), checked: a clear InvalidQueryError otherwise. */
export function callOptionsOf(options: object): ResolvedCallOptions {
  const { signal, timeoutMs, settings: given } = options as CallOptions;
  // The common call: nothing given, no withSettings around it, nothing to copy.
  if (signal === undefined && timeoutMs === undefined && given === undefined && ambientSettings() === undefined) return NO_CALL_OPTIONS;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new InvalidQueryError('signal must be an AbortSignal');
  if (timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs >= 1 && timeoutMs <= MAX_TIMEOUT_MS)) {
    throw new InvalidQueryError(`timeoutMs must be a whole number of milliseconds, from 1 to ${MAX_TIMEOUT_MS}`);
  }
  const settings = mergeSettings(ambientSettings(), resolveSettings(given));
  return { ...(signal ? { signal } : {}), ...(timeoutMs !== undefined ? { timeoutMs } : {}), ...(settings ? { settings } : {}) };
}

export function cancelledError(cause?: unknown): QueryCancelledError {
  return new QueryCancelledError(undefined, cause === undefined ? {} : { cause });
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw cancelledError();
}

/** A signal that aborts when either does. */
export function eitherSignal(a: AbortSignal | undefined, b: AbortSignal | undefined): AbortSignal | undefined {
  return a && b ? AbortSignal.any([a, b]) : (a ?? b);
}

/**
 * A pooled connection, unless `signal` aborts first: then the call rejects at once and the connection,
 * when pg-pool hands it over later, goes straight back (nothing was sent on it).
 */
export function acquireUnlessAborted(db: DatabasePool, signal: AbortSignal | undefined): Promise<pg.PoolClient> {
  if (!signal) return db.acquire();
  throwIfAborted(signal);
  const acquiring = db.acquire();
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      reject(cancelledError());
      acquiring.then((client) => db.release(client), () => undefined);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    acquiring.then(
      (client) => {
        signal.removeEventListener('abort', onAbort);
        if (!signal.aborted) resolve(client);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/**
 * Runs `work` (one statement on `client`, a connection nobody else sends on) so that `signal` cancels
 * it on the server. Settles only once both the statement and the cancel request have: the connection
 * can then be handed to the next caller without a late cancel hitting its statement (or it was
 * destroyed, when the cancel could not be sent within the connect timeout). A statement that failed
 * because of the cancel rejects with QueryCancelledError; one that completed first resolves.
 */
export async function cancellable<T>(db: DatabasePool, client: pg.ClientBase, signal: AbortSignal | undefined, work: () => Promise<T>): Promise<T> {
  if (!signal) return work();
  throwIfAborted(signal);
  let cancelling: Promise<void> | undefined;
  const onAbort = () => (cancelling = db.cancelStatement(client));
  signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await work();
  } catch (error) {
    // The cause mapped as every driver error is: in production its code only, never the driver's text.
    if (cancelling && isCancelOutcome(error)) throw cancelledError(db.mapError(error));
    throw error;
  } finally {
    signal.removeEventListener('abort', onAbort);
    if (cancelling) await cancelling;
  }
}

/** 57014 (query_canceled), or the connection failed (the cancel could not be sent, so it was destroyed). */
export function isCancelOutcome(error: unknown): boolean {
  return (error as { code?: unknown })?.code === '57014' || (error as { sqlstate?: unknown })?.sqlstate === '57014' || isConnectionUnusable(error);
}

/**
 * A pipelined statement: never cancelled on the server (it shares its connection, and a cancel hits
 * whichever statement runs). The caller is rejected when `signal` aborts; the result is discarded.
 */
export function abandonOnAbort<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      work.catch(() => undefined); // discarded, whatever it turns out to be
      reject(cancelledError());
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}

/** SET LOCAL statement_timeout as a fixed statement (the value is a validated integer, never text). */
export function localStatementTimeoutSql(timeoutMs: number): string {
  return `SELECT pg_catalog.set_config('statement_timeout', '${Math.trunc(timeoutMs)}', true)`;
}

/** SET statement_timeout for the session (withConnection; its DISCARD ALL on release undoes it). */
export function sessionStatementTimeoutSql(timeoutMs: number): string {
  return `SELECT pg_catalog.set_config('statement_timeout', '${Math.trunc(timeoutMs)}', false)`;
}

/**
 * The envelope with the per-call statement_timeout last before the caller's statement (after the
 * module's own SET LOCAL timeouts behind a pooler, which it overrides), in the same implicit
 * transaction: it ends with the statement's Sync.
 */
export function withCallTimeout(envelope: StatementEnvelope | undefined, timeoutMs: number | undefined): StatementEnvelope | undefined {
  if (timeoutMs === undefined) return envelope;
  return { before: [...(envelope?.before ?? []), localStatementTimeoutSql(timeoutMs)], after: envelope?.after ?? [] };
}

/** BEGIN (…) followed, in its round trip, by SET LOCAL statement_timeout: every statement of the transaction. */
export function beginWithTimeout(begin: string, timeoutMs: number | undefined): string {
  return timeoutMs === undefined ? begin : `${begin}; ${localStatementTimeoutSql(timeoutMs)}`;
}

/** A per-statement timeout or settings cannot be undone inside a transaction block (SET LOCAL lasts to its end). */
export function refuseInTransaction(client: pg.ClientBase, shape: { timeoutMs?: number; settingsStatement?: unknown }, beginPending = false): void {
  if (shape.timeoutMs === undefined && shape.settingsStatement === undefined) return;
  // Before a transaction's deferred BEGIN is sent its connection still looks idle.
  const status = (client as { getTransactionStatus?(): string | null }).getTransactionStatus?.();
  if (!beginPending && (status == null || status === 'I')) return;
  if (shape.timeoutMs !== undefined) {
    throw new InvalidQueryError(
      'timeoutMs cannot be set for one statement inside a transaction (it would last until the transaction ends): pass it to transaction(fn, { timeoutMs }), or send SET LOCAL statement_timeout yourself',
    );
  }
  throw new InvalidQueryError(
    'settings cannot be given for one statement inside a transaction (they would last until the transaction ends): pass them to transaction(fn, { settings }) or withConnection(fn, { settings })',
  );
}
