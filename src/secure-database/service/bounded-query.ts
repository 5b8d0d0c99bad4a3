import { createRequire } from 'node:module';
import pg from 'pg';
import type { EnvelopeStatement, StatementEnvelope } from '../pooler/server-settings.js';
import { camelCaseFields, camelCaseRowsOn } from '../config/row-case.js';
import { ResultTooLargeError } from '../errors/query.errors.js';
import type { PreparedStatement, RowLayout, StatementName } from './statement-cache.js';

// pg's own value serialisation for Bind (what Query.prepare passes), so values bind exactly as before.
const { prepareValue } = createRequire(import.meta.url)('pg/lib/utils.js') as { prepareValue: (value: unknown) => unknown };

export type { StatementEnvelope };

/** The parts of pg 8's Query (lib/query.js) this subclass builds on. */
interface PgQueryInternals {
  portal: string;
  name?: string;
  queryMode?: string;
  values?: unknown[];
  binary?: boolean;
  _result: PgResult;
  _accumulateRows?: boolean;
  hasBeenParsed(connection: PgConnection): boolean;
  handleError(error: unknown, connection: PgConnection): void;
  prepare(connection: PgConnection): void;
  handleDataRow(message: unknown): void;
  handleRowDescription(message: { fields: Array<{ name: string }> }): void;
  _canceledDueToError?: unknown;
  handleCommandComplete(message: unknown, connection: PgConnection): void;
  handleEmptyQuery(connection: PgConnection): void;
  handlePortalSuspended(connection: unknown): void;
  _getRows(connection: PgConnection, rows?: number): void;
}

/** pg 8's Result (lib/result.js): the row parsing state addFields builds from a RowDescription. */
interface PgResult {
  fields: pg.FieldDef[];
  _parsers: unknown[] | undefined;
  _prebuiltEmptyResultObject: object | null;
}

interface PgConnection {
  close(message: { type: 'S'; name: string }): void;
  parse(message: { text: string; name?: string }): void;
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
    // A named one (the settings statement beside a cached statement): parsed once per connection.
    if (!statement.parsed) connection.parse({ text: statement.text, ...(statement.name ? { name: statement.name } : {}) });
    connection.bind({ values: statement.values, ...(statement.name ? { statement: statement.name } : {}) });
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

function layoutOf(result: PgResult): RowLayout {
  return { fields: result.fields, parsers: result._parsers, emptyRow: result._prebuiltEmptyResultObject };
}

class BoundedQuery extends PgQuery {
  /** Envelope statements still to answer before the caller's (then 0), or -1 once the caller's is done. */
  private envelopeAhead: number;
  /** The named statement's per-connection entry, where its row description is kept. */
  private readonly prepared?: PreparedStatement;
  /** This execution sent Describe and its RowDescription (or NoData) is still to come. */
  private describing = false;
  private readonly arrayRows: boolean;

  constructor(
    statement: { text: string; values?: unknown[]; rowMode?: 'array' },
    callback: QueryCallback,
    private readonly limit: number,
    private readonly keepRows: boolean,
    private readonly envelope: StatementEnvelope = NO_ENVELOPE,
    private readonly named?: StatementName,
    private readonly camelCase = false,
  ) {
    super(...pgQueryArguments(statement, callback));
    this.name = named?.name;
    this.prepared = named?.prepared;
    this.arrayRows = statement.rowMode === 'array';
    this.queryMode = 'extended';
    this.envelopeAhead = envelope.before.length;
  }

  override prepare(connection: PgConnection): void {
    for (const text of this.envelope.before) sendFixed(connection, text);
    // Named statements evicted from the connection's cache (or stale): closed in the same write.
    if (this.named?.evict) for (const name of this.named.evict) connection.close({ type: 'S', name });
    const layout = this.prepared?.described && this.hasBeenParsed(connection) ? this.keptLayout(this.prepared) : undefined;
    if (layout) return this.executeDescribed(connection, layout);
    this.describing = this.prepared !== undefined;
    super.prepare(connection);
  }

  /**
   * The server described this statement on this connection before: Bind and Execute only (pg's prepare
   * minus Parse and Describe), with the rows parsed by the kept layout, as pg's addFields would build it.
   * A plan whose result type changed since fails at Bind (0A000), which runCached answers by re-preparing.
   */
  private executeDescribed(connection: PgConnection, layout: RowLayout): void {
    const result = this._result;
    result.fields = layout.fields;
    result._parsers = layout.parsers;
    result._prebuiltEmptyResultObject = layout.emptyRow;
    this._accumulateRows = true; // pg sets it on RowDescription; there is always a callback here
    try {
      connection.bind({ portal: this.portal, statement: this.name, values: this.values, binary: this.binary, valueMapper: prepareValue });
    } catch (error) {
      // A value that cannot be serialised: nothing was sent for this statement but the envelope; the
      // named statement stays parsed on the server (pg's own path would close it under the cache's feet).
      connection.sync();
      this.handleError(error, connection);
      return;
    }
    this._getRows(connection);
  }

  /** The kept layout for this execution's row mode, built from the kept fields the first time it is asked for. */
  private keptLayout(prepared: PreparedStatement): RowLayout | undefined {
    const kept = this.arrayRows ? prepared.arrayRows : prepared.objectRows;
    if (kept) return kept;
    const fields = prepared.described!.map((field) => ({ ...field }));
    if (this.camelCase) {
      try {
        camelCaseFields(fields);
      } catch {
        return undefined; // Described again: the collision fails this execution as it did the first
      }
    }
    super.handleRowDescription({ fields });
    return this.keepLayout(prepared);
  }

  private keepLayout(prepared: PreparedStatement): RowLayout {
    const layout = layoutOf(this._result);
    // Shared by every later execution's result: frozen, so nobody's change leaks into another's rows.
    for (const field of layout.fields) Object.freeze(field);
    Object.freeze(layout.fields);
    if (this.arrayRows) prepared.arrayRows = layout;
    else prepared.objectRows = layout;
    return layout;
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
    const keep = this.describing && this.prepared;
    this.describing = false;
    if (keep) keep.described = (message.fields as pg.FieldDef[]).map((field) => Object.freeze({ ...field }));
    if (this.camelCase) {
      try {
        camelCaseFields(message.fields);
      } catch (error) {
        this._canceledDueToError ||= error; // pg starts it at false
        super.handleRowDescription(message);
        return;
      }
    }
    super.handleRowDescription(message);
    if (keep) this.keepLayout(keep);
  }

  override handleDataRow(message: unknown): void {
    if (this.keepRows && this.envelopeAhead === 0) super.handleDataRow(message);
  }

  override handleCommandComplete(message: unknown, connection: PgConnection): void {
    if (this.envelopeAhead > 0) this.envelopeAhead--;
    else if (this.envelopeAhead === 0) {
      this.envelopeAhead = -1;
      // Described without a RowDescription: the server answered NoData, a statement without rows.
      if (this.describing && this.prepared) this.prepared.described = [];
      this.describing = false;
      super.handleCommandComplete(message, connection);
    }
  }

  override handleEmptyQuery(connection: PgConnection): void {
    this.envelopeAhead = -1;
    super.handleEmptyQuery(connection);
  }
}

/**
 * Resolves with fewer than `limit` rows (0: all); `limit` rows or more (the server stops at `limit`) is a
 * ResultTooLargeError for `limit` - 1. `keepRows` false keeps none, only the command's row count.
 */
export function queryBounded(
  client: pg.ClientBase,
  config: pg.QueryConfig & { rowMode?: 'array' },
  limit: number,
  keepRows: boolean,
  envelope?: StatementEnvelope,
  named?: StatementName,
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    // Past `limit` - 1 rows the result is too large (the server stopped at `limit`): rejected here, one promise for the statement.
    const callback: QueryCallback = (error, result) =>
      error ? reject(error) : limit !== 0 && result.rows.length >= limit ? reject(new ResultTooLargeError(limit - 1)) : resolve(result);
    const { text, values, rowMode } = config;
    const camelCase = !rowMode && camelCaseRowsOn(client);
    client.query(new BoundedQuery({ text, values: values as unknown[] | undefined, rowMode }, callback, limit, keepRows, envelope, named, camelCase));
  });
}
