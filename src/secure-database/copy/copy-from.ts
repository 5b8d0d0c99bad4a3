import { once } from 'node:events';
import type pg from 'pg';
import { from as copyFromStdin } from 'pg-copy-streams';
import { CopyDataError } from '../errors/copy.errors.js';
import { InvalidQueryError } from '../errors/query.errors.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { type CallOptions, acquireUnlessAborted, beginWithTimeout, callOptionsOf, throwIfAborted } from '../service/cancellation.js';
import { copyError, discardConnection } from './copy-connection.js';
import { type CopyTable, copyFromStatement } from './copy-statement.js';
import { CopyFieldError, encodeRow } from './copy-text-format.js';

/** The rows of copyFrom: arrays of values in the order of its columns, from any (async) iterable, read one at a time. */
export type CopyRows = AsyncIterable<readonly unknown[]> | Iterable<readonly unknown[]>;

/** Options of copyFrom: the call options (signal; timeoutMs, except on a transaction's handle). */
export type CopyFromOptions = CallOptions;

// Rows are written in chunks of about this many characters: few socket writes, memory bounded by the
// chunk and the socket's buffer (a write waits for 'drain' when the server reads slower than we encode).
const CHUNK_CHARS = 64 * 1024;

// setTimeout's ceiling.
const MAX_TIMER_MS = 2_147_483_647;

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
  backstopMs: number = MAX_TIMER_MS,
): Promise<number> {
  if (rows == null || (typeof (rows as AsyncIterable<unknown>)[Symbol.asyncIterator] !== 'function' && typeof (rows as Iterable<unknown>)[Symbol.iterator] !== 'function')) {
    throw new InvalidQueryError('copyFrom takes the rows as an iterable or async iterable of arrays');
  }
  throwIfAborted(signal);
  const copy = client.query(Object.assign(copyFromStdin(statement), { query_timeout: backstopMs }));
  let serverError: unknown;
  copy.on('error', (error: unknown) => (serverError ??= error));
  const onAbort = () => discardConnection(db, client);
  signal?.addEventListener('abort', onAbort, { once: true });
  let row = 0;
  let completed = false;
  // True while waiting for the next row: what throws then is the rows' own iterable.
  let pulling = true;
  try {
    let chunk = '';
    for await (const values of rows) {
      pulling = false;
      row++;
      if (serverError !== undefined) break;
      if (!Array.isArray(values) || values.length !== width) {
        throw new InvalidQueryError(`copyFrom row ${row} is not an array of ${width} values (one per column)`);
      }
      chunk += encodeRow(values);
      if (chunk.length >= CHUNK_CHARS) {
        const room = copy.write(chunk);
        chunk = '';
        if (!room && serverError === undefined) await once(copy, 'drain');
      }
      pulling = true;
    }
    pulling = false;
    if (serverError !== undefined) throw serverError;
    copy.end(chunk);
    await once(copy, 'finish');
    completed = true;
    return copy.rowCount;
  } catch (error) {
    if (error instanceof CopyFieldError) throw new CopyDataError(row, `copyFrom row ${row}, column ${error.column}: the value holds ${error.problem}`);
    // Ours, or thrown by the rows' own iterable: unchanged.
    if (error instanceof SecureDatabaseError || (pulling && serverError === undefined && !signal?.aborted)) throw error;
    throw copyError(db, serverError ?? error, signal?.aborted === true);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    if (!completed) discardConnection(db, client);
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
    const count = await copyRowsOn(db, client, statement, columns.length, rows, signal, copyBackstopMs(db, timeoutMs));
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

/** pg's client-side backstop for a COPY: the statement timeout that bounds it on the server, plus the connect timeout. */
export function copyBackstopMs(db: DatabasePool, timeoutMs: number | undefined): number {
  const statementMs = timeoutMs ?? db.config.serverTimeouts.statementTimeoutMs;
  return statementMs > 0 ? Math.min(statementMs + db.config.timeouts.connectMs, MAX_TIMER_MS) : MAX_TIMER_MS;
}
