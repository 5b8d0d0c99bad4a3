import Cursor from 'pg-cursor';
import type pg from 'pg';
import { ConnectionError } from '../errors/connection.errors.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { TimeoutError, promiseTimeout } from '../utils/promise-timeout.js';

// setTimeout's ceiling.
const MAX_TIMER_MS = 2_147_483_647;

type SocketHolder = { connection: { stream: { destroy(): void } } };

/**
 * Yields one statement's rows, `batchSize` per round trip, through a pg-cursor portal on `client`
 * (extended protocol; the next batch is only asked for when the consumer wants it). A connection
 * that broke is marked unusable (and `onBroken` told); otherwise the portal is closed however the
 * iteration ends, so the connection is clean for its next use. Errors come out mapped (sanitized).
 */
export async function* cursorRows<R>(
  client: pg.ClientBase,
  db: DatabasePool,
  text: string,
  values: readonly unknown[] | undefined,
  batchSize: number,
  onBroken: () => void = () => undefined,
): AsyncGenerator<R> {
  const cursor = new Cursor<R>(text, values ?? null);
  // pg arms its client-side query_timeout for every submitted query and disarms it when the query
  // calls back, which a cursor never does: a stream outliving it would be failed by it, even one
  // whose transaction raised statement_timeout on purpose. The server's statement_timeout bounds
  // the whole stream; each read below gets the same client-side backstop as an ordinary query.
  cursor.query_timeout = MAX_TIMER_MS;
  client.query(cursor);
  const backstopMs = db.config.client.query_timeout ?? MAX_TIMER_MS;
  const destroy = () => (client as unknown as SocketHolder).connection.stream.destroy();
  let open = true;
  try {
    for (;;) {
      const rows = await promiseTimeout(backstopMs, cursor.read(batchSize), destroy);
      if (rows.length === 0) {
        open = false;
        return;
      }
      yield* rows;
    }
  } catch (error) {
    // No portal to close after an error: pg-cursor has sent Sync, which ended it (closing it again would
    // wait for a ReadyForQuery that never comes).
    open = false;
    if (error instanceof TimeoutError || isConnectionUnusable(error)) {
      db.markUnusable(client);
      onBroken();
    }
    if (error instanceof TimeoutError) throw new ConnectionError('no answer from the server within the statement timeout (network)', { cause: error });
    throw db.mapError(error);
  } finally {
    cursor.callback?.(); // disarms pg's timer
    if (open) {
      // Ended early (break, return, the loop's body threw): close the portal before the connection is reused.
      await promiseTimeout(db.config.timeouts.connectMs, cursor.close()).catch(() => {
        db.markUnusable(client);
        onBroken();
        destroy();
      });
    }
  }
}
