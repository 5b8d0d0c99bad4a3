import pg from 'pg';
import type { EnvelopeStatement, StatementEnvelope } from '../pooler/server-settings.js';
import { camelCaseFields, camelCaseRowsOn } from '../config/row-case.js';
import type { StatementName } from './statement-cache.js';

export type { StatementEnvelope };

/** The parts of pg 8's Query (lib/query.js) this subclass builds on. */
interface PgQueryInternals {
  portal: string;
  name?: string;
  queryMode?: string;
  prepare(connection: PgConnection): void;
  handleDataRow(message: unknown): void;
  handleRowDescription(message: { fields: Array<{ name: string }> }): void;
  _canceledDueToError?: unknown;
  handleCommandComplete(message: unknown, connection: PgConnection): void;
  handleEmptyQuery(connection: PgConnection): void;
  handlePortalSuspended(connection: unknown): void;
  _getRows(connection: PgConnection, rows?: number): void;
}

interface PgConnection {
  close(message: { type: 'S'; name: string }): void;
  parse(message: { text: string }): void;
  bind(message: object): void;
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
}

const NO_ENVELOPE: StatementEnvelope = { before: [], after: [] };

function sendFixed(connection: PgConnection, statement: EnvelopeStatement): void {
  if (typeof statement === 'string') {
    connection.parse({ text: statement });
    connection.bind({});
  } else {
    connection.parse({ text: statement.text });
    connection.bind({ values: statement.values });
  }
  connection.execute({ portal: '', rows: 0 });
}

type QueryCallback = (error: Error | null, result: pg.QueryResult) => void;
type BoundedQueryConfig = pg.QueryConfig & { rowMode?: 'array'; queryMode: 'extended'; callback: QueryCallback };

const PgQuery = pg.Query as unknown as new (
  config: BoundedQueryConfig | string,
  values?: unknown[],
  callback?: QueryCallback,
) => pg.Query & PgQueryInternals;

/**
 * One statement over the extended protocol whose result the server itself cuts off: Execute asks for
 * at most `limit` rows (0: all) and Sync goes out in the same write. A larger result stops at the
 * server after `limit` rows (PortalSuspended) and the Sync closes the portal: no extra round trip,
 * memory never holds more than `limit` rows, and the connection is ready for the next caller.
 * With `keepRows` false rows are not even parsed (only the row count matters).
 */
/**
 * Text and values rather than a config object: pg copies a config object descriptor by descriptor on
 * every query (a measurable share of a pipelined statement's client time). Array rows need the object:
 * pg reads rowMode while constructing.
 */
function pgQueryArguments(
  statement: { text: string; values?: unknown[]; rowMode?: 'array' },
  callback: QueryCallback,
): [BoundedQueryConfig | string, unknown[]?, QueryCallback?] {
  return statement.rowMode ? [{ ...statement, queryMode: 'extended', callback }] : [statement.text, statement.values, callback];
}

class BoundedQuery extends PgQuery {
  /** Envelope statements still to answer before the caller's (then 0), or -1 once the caller's is done. */
  private envelopeAhead: number;

  constructor(
    statement: { text: string; values?: unknown[]; rowMode?: 'array'; name?: string },
    callback: QueryCallback,
    private readonly limit: number,
    private readonly keepRows: boolean,
    private readonly envelope: StatementEnvelope = NO_ENVELOPE,
    private readonly evict?: readonly string[],
    private readonly camelCase = false,
  ) {
    super(...pgQueryArguments(statement, callback));
    this.name = statement.name;
    this.queryMode = 'extended';
    this.envelopeAhead = envelope.before.length;
  }

  override prepare(connection: PgConnection): void {
    for (const text of this.envelope.before) sendFixed(connection, text);
    // Named statements evicted from the connection's cache (or stale): closed in the same write.
    for (const name of this.evict ?? []) connection.close({ type: 'S', name });
    super.prepare(connection);
  }

  // pg sends Execute then Sync, or, with its `rows` option, Flush and another Execute per batch.
  override _getRows(connection: PgConnection): void {
    connection.execute({ portal: this.portal, rows: this.limit });
    for (const text of this.envelope.after) sendFixed(connection, text);
    connection.sync();
  }

  // The Sync already on its way ends the portal: nothing more to fetch.
  override handlePortalSuspended(): void {
    this.envelopeAhead = -1;
  }

  // Renamed before pg builds its row template from the fields; a collision fails the query the way a
  // row that does not parse does (pg skips the rows, then reports it at ReadyForQuery).
  override handleRowDescription(message: { fields: Array<{ name: string }> }): void {
    if (this.camelCase) {
      try {
        camelCaseFields(message.fields);
      } catch (error) {
        this._canceledDueToError ||= error; // pg starts it at false
      }
    }
    super.handleRowDescription(message);
  }

  override handleDataRow(message: unknown): void {
    if (this.keepRows && this.envelopeAhead === 0) super.handleDataRow(message);
  }

  override handleCommandComplete(message: unknown, connection: PgConnection): void {
    if (this.envelopeAhead > 0) this.envelopeAhead--;
    else if (this.envelopeAhead === 0) {
      this.envelopeAhead = -1;
      super.handleCommandComplete(message, connection);
    }
  }

  override handleEmptyQuery(connection: PgConnection): void {
    this.envelopeAhead = -1;
    super.handleEmptyQuery(connection);
  }
}

/** Resolves with at most `limit` rows (0: all); `keepRows` false keeps none, only the command's row count. */
export function queryBounded(
  client: pg.ClientBase,
  config: pg.QueryConfig & { rowMode?: 'array' },
  limit: number,
  keepRows: boolean,
  envelope?: StatementEnvelope,
  named?: StatementName,
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    const callback: QueryCallback = (error, result) => (error ? reject(error) : resolve(result));
    const { text, values, rowMode } = config;
    const camelCase = !rowMode && camelCaseRowsOn(client);
    client.query(new BoundedQuery({ text, values: values as unknown[] | undefined, rowMode, name: named?.name }, callback, limit, keepRows, envelope, named?.evict, camelCase));
  });
}
