import { SecureDatabaseError } from './secure-database.error.js';

/**
 * A stream's consumer did not ask for the next row within streamIdleTimeoutMs
 * (DATABASE_STREAM_IDLE_TIMEOUT_MS). The server does not time out a statement while it waits for
 * the client, so the module closed the cursor and freed the connection (on a transaction's or
 * withConnection's handle: destroyed it, so nothing of that transaction commits); the rows not read
 * are lost. Read faster, read in pages, or raise the option.
 */
export class StreamIdleTimeoutError extends SecureDatabaseError {
  readonly code = 'DB_STREAM_IDLE_TIMEOUT';

  constructor(readonly idleTimeoutMs: number) {
    super(
      `The stream's consumer did not ask for the next row within ${idleTimeoutMs} ms, so its cursor was closed and its connection freed: ` +
        'pull rows without pausing that long, page the query instead, or raise DATABASE_STREAM_IDLE_TIMEOUT_MS (streamIdleTimeoutMs)',
    );
  }
}
