import { SecureDatabaseError } from './secure-database.error.js';

/**
 * The caller's AbortSignal aborted the call (`{ signal }`): nothing was sent when it was already
 * aborted or the call was still waiting for a connection; a statement running on a connection of its
 * own was cancelled on the server; a pipelined one (sharing its connection) was left to finish and
 * its result discarded. Not retryable: the caller itself asked to stop.
 */
export class QueryCancelledError extends SecureDatabaseError {
  readonly code = 'DB_QUERY_CANCELLED';

  constructor(message = 'The query was cancelled by its caller (AbortSignal)', options: { cause?: unknown } = {}) {
    super(message, options);
  }
}
