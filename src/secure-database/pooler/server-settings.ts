import type { BoundStatement } from '../settings/database-settings.js';

/** The server-side timeouts the module applies to every statement, in milliseconds (validated whole numbers). */
export interface ServerTimeouts {
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
}

const SETTINGS: Array<[keyof ServerTimeouts, string]> = [
  ['statementTimeoutMs', 'statement_timeout'],
  ['lockTimeoutMs', 'lock_timeout'],
  ['idleInTransactionTimeoutMs', 'idle_in_transaction_session_timeout'],
];

// The values are integers validated at startup, never input; the functions are pg_catalog-qualified
// so a role's search_path cannot replace them (see tls-assertion.ts).
const assignments = (timeouts: ServerTimeouts, local: boolean) =>
  SETTINGS.map(([key, name]) => `pg_catalog.set_config('${name}', '${Math.trunc(timeouts[key])}', ${local})`).join(', ');

/**
 * Behind a transaction pooler, ahead of each statement in its round trip (the implicit transaction
 * that lasts until the Sync), and after BEGIN in transaction(): set_config(…, true) is SET LOCAL, so
 * the timeouts hold for exactly that transaction on whichever server connection runs it, and leave
 * nothing behind on that connection.
 */
export function localTimeoutsSql(timeouts: ServerTimeouts): string {
  return `SELECT ${assignments(timeouts, true)}`;
}

/** Behind a session pooler: set once per connection (and again after DISCARD ALL), as the startup packet would. */
export function sessionTimeoutsSql(timeouts: ServerTimeouts): string {
  return `SELECT ${assignments(timeouts, false)}`;
}

/**
 * Fixed statements (module text, never input) sent in the same write as the caller's, before and
 * after it, ahead of the one Sync: behind a transaction pooler, the SET LOCAL timeouts before it.
 * Everything up to a Sync is one implicit transaction (committed, or rolled back on an error, by the
 * Sync) that the pooler runs on one server connection, so the statement runs under the timeouts in
 * one round trip and they end with it. Their results are dropped; when one fails the server skips
 * the rest up to the Sync, as it does for the caller's.
 */
export interface StatementEnvelope {
  before: readonly EnvelopeStatement[];
  after: readonly EnvelopeStatement[];
}

/** Module text alone, or module text with bound values (per-call settings: see settings/). */
export type EnvelopeStatement = string | BoundStatement;
