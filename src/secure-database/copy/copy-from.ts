import { once } from 'node:events';
import type pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { CopyDataError } from '../errors/copy.errors.js';
import { InvalidQueryError } from '../errors/query.errors.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { type CallOptions, acquireUnlessAborted, beginWithTimeout, callOptionsOf, throwIfAborted } from '../service/cancellation.js';
import { CopyDeadline, copyError, copyTimeoutMs, discardConnection } from './copy-connection.js';
import { type CopyTable, copyFromStatement } from './copy-statement.js';
import { CopyFieldError, encodeRow } from './copy-text-format.js';

/** The rows of copyFrom: arrays of values in the order of its columns, from any (async) iterable, read one at a time. */
export type CopyRows = AsyncIterable<readonly unknown[]> | Iterable<readonly unknown[]>;

/** Options of copyFrom: the call options (signal; timeoutMs, except on a transaction's handle). */
export type CopyFromOptions = CallOptions;

// Rows are written in chunks of about this many characters: few socket writes, memory bounded by the
// chunk and the copy stream's buffer (a write waits for 'drain' when the server reads slower than we encode).
const CHUNK_CHARS = 64 * 1024;
// The copy stream buffers this much before asking the encoder to wait: encoding the next chunks goes
// on while the socket sends the last ones (with pg-copy-streams' default 16 KB every chunk waited).
const BUFFERED_BYTES = 512 * 1024;

// pg's own client-side timer is off: CopyDeadline bounds the whole copy.
const NO_CLIENT_TIMER_MS = 2_147_483_647;

/**
 * Streams `rows` into COPY `statement` … FROM STDIN on `client`, which this call holds alone, and
 * resolves to the server's row count. Backpressure: the next row is only pulled from `rows` once the
 * socket took the previous chunk. Errors thrown by `rows` itself propagate unchanged; any failure
 * (that, a bad row, the server's error, the signal) discards the connection (discardConnection), so
 * nothing of the COPY is kept and the connection is never reused mid-protocol.
 */
export async function copyRowsOn(
  db: DatabasePool,
  client: pg.ClientBase,
  statement: string,
  width: number,
  rows: CopyRows,
  signal: AbortSignal | undefined,
  timeoutMs: number,
): Promise<number> {
  if (rows == null || (typeof (rows as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function' && typeof (rows as Iterable<unknown>)[Symbol.iterator] !== 'function')) {
    throw new InvalidQueryError('copyFrom takes the rows as an iterable or async iterable of arrays');
  }
  throwIfAborted(signal);
  const copy = client.query(Object.assign(copyFromStdin(statement, { highWaterMark: BUFFERED_BYTES }), { query_timeout: NO_CLIENT_TIMER_MS }));
  const deadline = new CopyDeadline(db, client, timeoutMs);
  // The server's error (a bad value, statement_timeout) or the connection's loss, also while the rows'
  // iterable is still producing the next row: the copy ends then, not when the iterable next yields.
  let serverError: unknown;
  // Rejects the pull in progress, if any (one promise per row, none kept).
  let interrupt: ((error: unknown) => void) | undefined;
  copy.on('error', (error: unknown) => {
    serverError ??= error;
    interrupt?.(error);
  });
  const failed = () => (serverError === undefined ? undefined : Promise.reject(serverError));
  const onAbort = () => discardConnection(db, client);
  signal?.addEventListener('abort', onAbort, { once: true });
  const iterator = Symbol.asyncIterator in rows ? rows[Symbol.asyncIterator]() : (rows as Iterable<readonly unknown[]>)[Symbol.iterator]();
  let row = 0;
  let completed = false;
  let exhausted = false;
  // True while waiting for the next row: what throws then is the rows' own iterable.
  let pulling = false;
  try {
    let chunk = '';
    for (;;) {
      pulling = true;
      const pulled = iterator.next();
      // A sync iterable's row is there already; an async one's is awaited, unless the copy fails first.
      const next = 'then' in pulled ? await new Promise<IteratorResult<readonly unknown[]>>((resolve, reject) => {
        interrupt = reject;
        pulled.then(resolve, reject);
      }) : pulled;
      interrupt = undefined;
      pulling = false;
      if (serverError !== undefined) throw serverError;
      if (next.done) {
        exhausted = true;
        break;
      }
      row++;
      const values = next.value;
      if (!Array.isArray(values) || values.length !== width) {
        throw new InvalidQueryError(`copyFrom row ${row} is not an array of ${width} values (one per column)`);
      }
      chunk += encodeRow(values);
      if (chunk.length >= CHUNK_CHARS) {
        const room = copy.write(chunk);
        chunk = '';
        if (!room) await (failed() ?? once(copy, 'drain'));
      }
    }
    copy.end(chunk);
    await (failed() ?? once(copy, 'finish'));
    completed = true;
    return copy.rowCount;
  } catch (error) {
    if (deadline.expired) throw deadline.error();
    if (error instanceof CopyFieldError) throw new CopyDataError(row, `copyFrom row ${row}, column ${error.column}: the value holds ${error.problem}`);
    // Ours, or thrown by the rows' own iterable: unchanged.
    if (error instanceof SecureDatabaseError || (pulling && serverError === undefined && !signal?.aborted)) throw error;
    throw copyError(db, serverError ?? error, signal?.aborted === true);
  } finally {
    deadline.stop();
    signal?.removeEventListener('abort', onAbort);
    if (!completed) discardConnection(db, client);
    // Stopped early: the iterable is closed (not awaited: a generator still producing its next row would hold this call until it does).
    if (!exhausted) Promise.resolve(iterator.return?.()).catch(() => undefined);
  }
}

/**
 * copyFrom on a connection of its own from the pool. Behind a transaction pooler, and with a per-call
 * timeoutMs, the COPY runs in a transaction of its own under SET LOCAL timeouts; otherwise it is one
 * autocommit statement under the session's statement_timeout. The connection is always released
 * (destroyed when the copy did not complete).
 */
export async function copyFromPool(db: DatabasePool, table: CopyTable, columns: readonly string[], rows: CopyRows, options: CopyFromOptions = {}): Promise<number> {
  const statement = copyFromStatement(table, columns);
  const { signal, timeoutMs } = callOptionsOf(options ?? {});
  throwIfAborted(signal);
  const client = await acquireUnlessAborted(db, signal);
  const wrapped = db.transactionPooled || timeoutMs !== undefined;
  let copying = false;
  try {
    if (wrapped) await client.query(beginWithTimeout(db.beginStatement('BEGIN'), timeoutMs));
    copying = true;
    const count = await copyRowsOn(db, client, statement, columns.length, rows, signal, copyTimeoutMs(db, timeoutMs));
    copying = false;
    if (wrapped) await client.query('COMMIT');
    return count;
  } catch (error) {
    db.discardIfBroken(client, error);
    // copyRowsOn's errors are final (the rows' own unchanged); BEGIN's and COMMIT's are the driver's.
    throw error instanceof SecureDatabaseError || copying ? error : db.mapError(error);
  } finally {
    // A transaction left open (a failed BEGIN or COMMIT) makes release() destroy the connection.
    db.release(client);
  }
}
