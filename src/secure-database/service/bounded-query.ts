import pg from 'pg';

/** The parts of pg 8's Query (lib/query.js) this subclass builds on. */
interface PgQueryInternals {
  portal: string;
  handleDataRow(message: unknown): void;
  handlePortalSuspended(connection: unknown): void;
  _getRows(connection: PgConnection, rows?: number): void;
}

interface PgConnection {
  execute(message: { portal: string; rows: number }): void;
  sync(): void;
}

type QueryCallback = (error: Error | null, result: pg.QueryResult) => void;
type BoundedQueryConfig = pg.QueryConfig & { rowMode?: 'array'; queryMode: 'extended'; callback: QueryCallback };

const PgQuery = pg.Query as unknown as new (config: BoundedQueryConfig) => pg.Query & PgQueryInternals;

/**
 * One statement over the extended protocol whose result the server itself cuts off: Execute asks for
 * at most `limit` rows (0: all) and Sync goes out in the same write. A larger result stops at the
 * server after `limit` rows (PortalSuspended) and the Sync closes the portal: no extra round trip,
 * memory never holds more than `limit` rows, and the connection is ready for the next caller.
 * With `keepRows` false rows are not even parsed (only the row count matters).
 */
class BoundedQuery extends PgQuery {
  constructor(
    config: BoundedQueryConfig,
    private readonly limit: number,
    private readonly keepRows: boolean,
  ) {
    super(config);
  }

  // pg sends Execute then Sync, or, with its `rows` option, Flush and another Execute per batch.
  override _getRows(connection: PgConnection): void {
    connection.execute({ portal: this.portal, rows: this.limit });
    connection.sync();
  }

  // The Sync already on its way ends the portal: nothing more to fetch.
  override handlePortalSuspended(): void {}

  override handleDataRow(message: unknown): void {
    if (this.keepRows) super.handleDataRow(message);
  }
}

/** Resolves with at most `limit` rows (0: all); `keepRows` false keeps none, only the command's row count. */
export function queryBounded(
  client: pg.ClientBase,
  config: pg.QueryConfig & { rowMode?: 'array' },
  limit: number,
  keepRows: boolean,
): Promise<pg.QueryResult> {
  return new Promise((resolve, reject) => {
    const callback: QueryCallback = (error, result) => (error ? reject(error) : resolve(result));
    client.query(new BoundedQuery({ ...config, queryMode: 'extended', callback }, limit, keepRows));
  });
}
