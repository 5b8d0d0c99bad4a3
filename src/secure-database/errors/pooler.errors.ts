import { SecureDatabaseError } from './secure-database.error.js';

/**
 * Work that needs a server session of its own (withConnection, LISTEN, session SET, PREPARE, WITH
 * HOLD cursors, temporary tables, statements that cannot run inside a transaction) was asked of a
 * connection behind a transaction pooler, where each transaction may run on another server
 * connection shared with other clients. The message says what to use instead.
 */
export class SessionUnavailableError extends SecureDatabaseError {
  readonly code = 'DB_SESSION_UNAVAILABLE';
}
