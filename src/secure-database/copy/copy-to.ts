import type pg from 'pg';
import { to as copyToStdout } from 'pg-copy-streams';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { DatabasePool } from '../pool/database-pool.js';
import type { BoundStatement } from '../settings/database-settings.js';
import { type CallOptions, acquireUnlessAborted, beginWithTimeout, callOptionsOf, throwIfAborted } from '../service/cancellation.js';
import { SqlFragment } from '../service/sql.js';
import { CopyDeadline, copyError, copyTimeoutMs, disarmClientTimer, discardConnection } from './copy-connection.js';
import { copyToStatement } from './copy-statement.js';
import { decodeRow } from './copy-text-format.js';

/** Options of copyTo. */
export interface CopyToOptions extends CallOptions {
  /**
   * true: the raw COPY text-format bytes as the server sends them (Buffers, not aligned to rows), to
   * pipe into a file or an HTTP response. Default: rows, each an array of the columns' text (null for NULL).
   */
  chunks?: boolean;
}

/** A row of copyTo: each column's value in PostgreSQL's text output form (what `::text` gives), null for NULL. */
export type CopyRow = Array<string | null>;

/** The statement of a copyTo call: SQL text or a sql`…` template without values. */
export function copyToText(query: string | SqlFragment): string {
  if (typeof query === 'string') return copyToStatement(query, undefined);
  if (query instanceof SqlFragment) return copyToStatement(query.text, query.values);
  throw new InvalidQueryError('copyTo takes SQL text or a sql`…` template');
}

/**
 * The bytes of COPY (query) TO STDOUT on `client`, chunk by chunk as the loop asks for them (the socket
 * is paused in between: a slow consumer makes nothing buffer). A copy left before its end (break, a
 * throw in the loop, the signal) discards the connection: the server is still sending, and only
 * closing the socket stops it.
 */
export async function* copyChunksOn(db: DatabasePool, client: pg.ClientBase, statement: string, signal: AbortSignal | undefined, timeoutMs: number): AsyncGenerator<Buffer> {
  throwIfAborted(signal);
  // pg's own client-side timer is off: CopyDeadline bounds the whole copy, a slow reader included.
  const copy = client.query(Object.assign(copyToStdout(statement), { query_timeout: 2_147_483_647 }));
  const deadline = new CopyDeadline(db, client, timeoutMs);
  // pg-copy-streams ends the stream at CopyDone, before pg has read the ReadyForQuery that frees the
  // connection: the copy is over only then (and a late error, the connection's loss, is never unhandled).
  let failure: unknown;
  const ready = new Promise<void>((resolve, reject) => {
    (copy as unknown as { handleReadyForQuery(): void }).handleReadyForQuery = () => resolve();
    copy.on('error', (error: unknown) => reject((failure ??= error)));
  });
  ready.catch(() => undefined);
  const onAbort = () => discardConnection(db, client);
  signal?.addEventListener('abort', onAbort, { once: true });
  let completed = false;
  try {
    try {
      yield* coalesced(copy);
      await ready;
    } catch (error) {
      throw deadline.expired ? deadline.error() : copyError(db, error, signal?.aborted === true);
    }
    completed = true;
  } finally {
    deadline.stop();
    disarmClientTimer(copy);
    signal?.removeEventListener('abort', onAbort);
    if (!completed) discardConnection(db, client);
  }
}

// pg-copy-streams gives one Buffer per CopyData message (a row): they are handed on in batches of about this size.
const CHUNK_BYTES = 64 * 1024;

/** The stream's Buffers, what is already there joined into one, read only as the loop asks. */
async function* coalesced(copy: NodeJS.ReadableStream & { readableEnded?: boolean }): AsyncGenerator<Buffer> {
  let failure: unknown;
  let wake: (() => void) | undefined;
  const notify = () => wake?.();
  const onError = (error: unknown) => {
    failure ??= error;
    notify();
  };
  copy.on('readable', notify);
  copy.on('end', notify);
  copy.on('error', onError);
  try {
    for (;;) {
      const parts: Buffer[] = [];
      let size = 0;
      let part: Buffer | null;
      // After a failure (the deadline, the connection lost) nothing more is handed on, even what arrived before.
      if (failure !== undefined) throw failure;
      while (size < CHUNK_BYTES && (part = copy.read() as Buffer | null) !== null) {
        parts.push(part);
        size += part.length;
      }
      if (parts.length > 0) {
        yield parts.length === 1 ? parts[0] : Buffer.concat(parts, size);
        continue;
      }
      if (failure !== undefined) throw failure;
      if (copy.readableEnded) return;
      await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
    }
  } finally {
    copy.off('readable', notify);
    copy.off('end', notify);
    copy.off('error', onError);
  }
}

/** The rows of the text format in `chunks`: split at each newline byte (never part of a UTF-8 character, and escaped inside values). */
export async function* copyRowsOf(chunks: AsyncIterable<Buffer>): AsyncGenerator<CopyRow> {
  let rest: Buffer | undefined;
  for await (const chunk of chunks) {
    const buffer = rest ? Buffer.concat([rest, chunk]) : chunk;
    const last = buffer.lastIndexOf(0x0a);
    if (last === -1) {
      rest = buffer;
      continue;
    }
    rest = last + 1 < buffer.length ? buffer.subarray(last + 1) : undefined;
    const lines = buffer.toString('utf8', 0, last).split('\n');
    for (const line of lines) yield decodeRow(line);
  }
}

/**
 * copyTo on a connection of its own from the pool, released at the end, on break and on error
 * (destroyed unless the copy completed). Behind a transaction pooler, with a per-call timeoutMs, and
 * with settings (see settings/), in a read transaction of its own under SET LOCAL timeouts and settings.
 */
export async function* copyToPool(db: DatabasePool, statement: string, options: CopyToOptions, settings?: BoundStatement): AsyncGenerator<Buffer> {
  const { signal, timeoutMs } = callOptionsOf(options);
  throwIfAborted(signal);
  const client = await acquireUnlessAborted(db, signal);
  const wrapped = db.transactionPooled || timeoutMs !== undefined || settings !== undefined;
  try {
    try {
      if (wrapped) await client.query(beginWithTimeout(db.beginStatement('BEGIN'), timeoutMs));
      if (settings) await client.query(settings.text, settings.values as string[]);
    } catch (error) {
      db.discardIfBroken(client, error);
      throw db.mapError(error);
    }
    yield* copyChunksOn(db, client, statement, signal, copyTimeoutMs(db, timeoutMs));
    if (wrapped) {
      try {
        await client.query('COMMIT');
      } catch (error) {
        db.discardIfBroken(client, error);
        throw db.mapError(error);
      }
    }
  } finally {
    db.release(client);
  }
}

/** copyTo's options, checked. */
export function copyToOptionsOf(options: unknown): CopyToOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null) throw new InvalidQueryError('copyTo options must be an object');
  const { chunks } = options as CopyToOptions;
  if (chunks !== undefined && typeof chunks !== 'boolean') throw new InvalidQueryError('copyTo option chunks must be true or false');
  return options as CopyToOptions;
}

/** copyTo's result from `chunksOf` (the handle's or the pool's copy): the chunks themselves, or the rows in them. */
export function copyToResult(
  query: string | SqlFragment,
  options: unknown,
  chunksOf: (statement: string, options: CopyToOptions) => AsyncGenerator<Buffer>,
): AsyncGenerator<Buffer> | AsyncGenerator<CopyRow> {
  const checked = copyToOptionsOf(options);
  const chunks = chunksOf(copyToText(query), checked);
  return checked.chunks ? chunks : copyRowsOf(chunks);
}
