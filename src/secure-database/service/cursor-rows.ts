import Cursor from 'pg-cursor';
import type pg from 'pg';
import { ConnectionError } from '../errors/connection.errors.js';
import { StreamIdleTimeoutError } from '../errors/stream.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { camelCaseFields, camelCaseRowsOn } from './row-case.js';
import { TimeoutError, promiseTimeout } from '../utils/promise-timeout.js';

// setTimeout's ceiling.
const MAX_TIMER_MS = 2_147_483_647;

type SocketHolder = { connection: { stream: { destroy(): void } } };

/** What happens to the connection when the consumer stalls past the idle deadline. */
export type IdleAction =
  /** The stream owns the connection: the portal is closed, then `release` hands the connection back. */
  | { release: () => Promise<void> }
  /** The connection belongs to a callback: it is ended (its transaction rolls back) and `ended` told, so the owner refuses further use. */
  | { ended: (error: StreamIdleTimeoutError) => void };

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
 */
export async function* cursorRows<R>(
  client: pg.ClientBase,
  db: DatabasePool,
  text: string,
  values: readonly unknown[] | undefined,
  batchSize: number,
  onIdle: IdleAction,
  onBroken: () => void = () => undefined,
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
  const idle = new IdleDeadline(streamIdleMs, async () => {
    open = false;
    cursor.callback?.(); // disarms pg's timer
    const error = new StreamIdleTimeoutError(streamIdleMs);
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
  try {
    for (;;) {
      const rows = await promiseTimeout(backstopMs, cursor.read(batchSize), destroy);
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
    if (error instanceof StreamIdleTimeoutError || error === parsing.failure) throw error;
    // No portal to close after an error: pg-cursor has sent Sync, which ended it (closing it again would
    // wait for a ReadyForQuery that never comes).
    open = false;
    if (error instanceof TimeoutError || isConnectionUnusable(error)) broken();
    if (error instanceof TimeoutError) throw new ConnectionError('no answer from the server within the statement timeout (network)', { cause: error });
    throw db.mapError(error);
  } finally {
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
  private expired?: Promise<StreamIdleTimeoutError>;

  constructor(
    private readonly ms: number,
    private readonly onExpire: () => Promise<StreamIdleTimeoutError>,
  ) {}

  suspend(): void {
    this.since = performance.now();
    if (this.timer === undefined && this.expired === undefined) this.arm(this.ms);
  }

  /** The cleanup's outcome when the deadline passed during the pause. */
  resume(): Promise<StreamIdleTimeoutError> | undefined {
    this.since = undefined;
    return this.expired;
  }

  stop(): Promise<StreamIdleTimeoutError> | undefined {
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
    // Never rejects: the owners' cleanups handle their own failures, and nobody may ever await this.
    this.expired = this.onExpire().catch(() => new StreamIdleTimeoutError(this.ms));
  }
}
