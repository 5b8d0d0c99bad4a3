import Cursor from 'pg-cursor';
import type pg from 'pg';
import { QueryCancelledError } from '../errors/cancellation.errors.js';
import { ConnectionError } from '../errors/connection.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { StreamIdleTimeoutError } from '../errors/stream.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { camelCaseFields, camelCaseRowsOn } from '../config/row-case.js';
import { TimeoutError, promiseTimeout } from '../utils/promise-timeout.js';
import { cancelledError, isCancelOutcome } from './cancellation.js';

// setTimeout's ceiling.
const MAX_TIMER_MS = 2_147_483_647;

type SocketHolder = { connection: { stream: { destroy(): void } } };

/** What happens to the connection when the consumer stalls past the idle deadline. */
export type IdleAction =
  /** The stream owns the connection: the portal is closed, then `release` hands the connection back. */
  | { release: () => Promise<void> }
  /** The connection belongs to a callback: it is ended (its transaction rolls back) and `ended` told, so the owner refuses further use. */
  | { ended: (error: SecureDatabaseError) => void };

/**
 * Yields one statement's rows, `batchSize` per round trip, through a pg-cursor portal on `client`
 * (extended protocol; the next batch is only asked for when the consumer wants it). A connection
 * that broke is marked unusable (and `onBroken` told); otherwise the portal is closed however the
 * iteration ends, so the connection is clean for its next use. Errors come out mapped (sanitized).
 *
 * While the consumer holds a row without asking for the next one, the server waits for the client
 * (ClientRead), where statement_timeout does not fire: a consumer that stops pulling would hold the
 * connection for ever. So after streamIdleMs without a pull `onIdle` frees it, from a timer (the
 * generator, suspended at its yield, cannot run), and the next pull throws StreamIdleTimeoutError.
 *
 * `signal` aborting does the same at once while the consumer holds a row (the next pull throws
 * QueryCancelledError); while a batch is being read it cancels the statement on the server (a
 * CancelRequest over TLS), and the generator ends only once that cancel is settled.
 */
export async function* cursorRows<R>(
  client: pg.ClientBase,
  db: DatabasePool,
  text: string,
  values: readonly unknown[] | undefined,
  batchSize: number,
  onIdle: IdleAction,
  onBroken: () => void = () => undefined,
  signal?: AbortSignal,
): AsyncGenerator<R> {
  const cursor = new Cursor<R>(text, values ?? null);
  const parsing = catchParseErrors(cursor, camelCaseRowsOn(client));
  // pg arms its client-side query_timeout for every submitted query and disarms it when the query
  // calls back, which a cursor never does: a stream outliving it would be failed by it, even one
  // whose transaction raised statement_timeout on purpose. The server's statement_timeout bounds
  // the reads; each read below gets the same client-side backstop as an ordinary query.
  cursor.query_timeout = MAX_TIMER_MS;
  client.query(cursor);
  const backstopMs = db.config.client.query_timeout ?? MAX_TIMER_MS;
  const { connectMs, streamIdleMs } = db.config.timeouts;
  const destroy = () => (client as unknown as SocketHolder).connection.stream.destroy();
  const broken = () => {
    db.markUnusable(client);
    onBroken();
  };
  let open = true;
  const idle = new IdleDeadline(streamIdleMs, async (error) => {
    open = false;
    cursor.callback?.(); // disarms pg's timer
    if ('ended' in onIdle) {
      broken();
      onIdle.ended(error);
      // Terminate: the server rolls the transaction back now, not when the callback ends.
      await promiseTimeout(connectMs, (client as pg.Client).end()).catch(destroy);
      return error;
    }
    await promiseTimeout(connectMs, cursor.close()).catch(() => {
      broken();
      destroy();
    });
    await onIdle.release();
    return error;
  });
  let reading = false;
  let cancelling: Promise<void> | undefined;
  const onAbort = () => {
    if (idle.interrupt(cancelledError())) return; // the consumer holds a row: freed as on the idle deadline
    if (reading) cancelling = db.cancelStatement(client);
    // Otherwise the loop is between reads: it checks the signal before the next one.
  };
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for (;;) {
      if (signal?.aborted) throw cancelledError();
      reading = true;
      const rows = await promiseTimeout(backstopMs, cursor.read(batchSize), destroy).finally(() => (reading = false));
      if (parsing.failure) throw parsing.failure;
      if (rows.length === 0) {
        open = false;
        return;
      }
      for (const row of rows) {
        idle.suspend();
        yield row;
        const expired = idle.resume();
        if (expired) throw await expired;
      }
    }
  } catch (error) {
    // The portal is still open after a value that did not parse: `finally` closes it.
    if (error instanceof StreamIdleTimeoutError || error instanceof QueryCancelledError || error === parsing.failure) throw error;
    // No portal to close after an error: pg-cursor has sent Sync, which ended it (closing it again would
    // wait for a ReadyForQuery that never comes).
    open = false;
    if (error instanceof TimeoutError || isConnectionUnusable(error)) broken();
    // The cause mapped as every driver error is: in production its code only, never the driver's text.
    if (cancelling && isCancelOutcome(error)) throw cancelledError(db.mapError(error));
    if (error instanceof TimeoutError) throw new ConnectionError('no answer from the server within the statement timeout (network)', { cause: error });
    throw db.mapError(error);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // The cancel request settles before the owner may hand the connection to anyone else.
    if (cancelling) await cancelling;
    // Ended by `return()` while the idle deadline's cleanup runs: the owner sees the connection after it.
    const expired = idle.stop();
    if (expired) await expired;
    cursor.callback?.(); // disarms pg's timer
    if (open) {
      // Ended early (break, return, the loop's body threw): close the portal before the connection is reused.
      await promiseTimeout(connectMs, cursor.close()).catch(() => {
        broken();
        destroy();
      });
    }
  }
}

/**
 * pg-cursor parses each row inside the socket's data handler without a try: a type parser that throws
 * there (DATABASE_INT8=number meeting a value it cannot hold) would be an uncaught exception. The
 * first failure is kept instead (later rows skipped) and thrown by the read that got the batch. With
 * `camelCase` the fields are renamed (DATABASE_ROW_CASE=camel) before pg builds rows from them.
 */
function catchParseErrors(cursor: object, camelCase: boolean): { failure?: unknown } {
  const state: { failure?: unknown } = {};
  const target = cursor as { handleDataRow(message: unknown): void; handleRowDescription(message: { fields: Array<{ name: string }> }): void };
  const handleDataRow = target.handleDataRow.bind(cursor);
  target.handleDataRow = (message) => {
    if (state.failure !== undefined) return;
    try {
      handleDataRow(message);
    } catch (error) {
      state.failure = error;
    }
  };
  if (camelCase) {
    const handleRowDescription = target.handleRowDescription.bind(cursor);
    target.handleRowDescription = (message) => {
      try {
        camelCaseFields(message.fields);
      } catch (error) {
        state.failure ??= error;
      }
      handleRowDescription(message);
    };
  }
  return state;
}

/**
 * The consumer's pause at a yield, bounded. One timer per pause at most, armed lazily: the per-row
 * cost is a clock read, not a timer. When it fires it re-arms for what is left of the pause, or does
 * nothing if the consumer has pulled since (the generator is running).
 */
class IdleDeadline {
  private since?: number;
  private timer?: NodeJS.Timeout;
  private expired?: Promise<SecureDatabaseError>;

  constructor(
    private readonly ms: number,
    private readonly onExpire: (error: SecureDatabaseError) => Promise<SecureDatabaseError>,
  ) {}

  suspend(): void {
    this.since = performance.now();
    if (this.timer === undefined && this.expired === undefined) this.arm(this.ms);
  }

  /** The cleanup's outcome when the deadline passed during the pause. */
  resume(): Promise<SecureDatabaseError> | undefined {
    this.since = undefined;
    return this.expired;
  }

  stop(): Promise<SecureDatabaseError> | undefined {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.since = undefined;
    return this.expired;
  }

  private arm(ms: number): void {
    // unref: a stalled stream must not keep the process alive (its socket decides that).
    this.timer = setTimeout(() => this.fire(), ms).unref();
  }

  private fire(): void {
    this.timer = undefined;
    if (this.since === undefined) return; // pulled since: re-armed at the next yield
    const left = this.since + this.ms - performance.now();
    if (left > 0) return this.arm(Math.ceil(left));
    this.expire(new StreamIdleTimeoutError(this.ms));
  }

  /** Ends the pause now with `error` (an abort); false when the consumer is not pausing. */
  interrupt(error: SecureDatabaseError): boolean {
    if (this.since === undefined || this.expired !== undefined) return false;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.expire(error);
    return true;
  }

  private expire(error: SecureDatabaseError): void {
    // Never rejects: the owners' cleanups handle their own failures, and nobody may ever await this.
    this.expired = this.onExpire(error).catch(() => error);
  }
}
