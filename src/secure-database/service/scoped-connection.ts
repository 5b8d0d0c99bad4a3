import type pg from 'pg';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { Queryable, runStatement } from './queryable.js';

/**
 * The handle `transaction` and `withConnection` pass to their callback: the query helpers, on the one
 * connection the callback holds. It stops working when the callback's scope ends, so a handle kept
 * around can never query a connection that went back to the pool and now belongs to someone else.
 */
export class ScopedConnection extends Queryable {
  private client?: pg.PoolClient;
  /** The connection broke: it is destroyed on release, and no ROLLBACK or session reset is tried on it. */
  broken = false;
  /** The first error the server reported on this handle (a failed transaction's cause). */
  firstError?: SecureDatabaseError;

  /** @internal Made by DatabaseService. */
  constructor(db: DatabasePool, client: pg.PoolClient) {
    super(db);
    this.client = client;
  }

  protected run(text: string, values: readonly unknown[] | undefined, rowMode: 'array' | undefined): Promise<pg.QueryResult> {
    return this.onClient((client) => runStatement(client, text, values, rowMode));
  }

  /**
   * @internal The module's own fixed statements (BEGIN …, COMMIT, ROLLBACK), never caller text: the
   * simple protocol sends them as one message instead of five.
   */
  control(statement: string): Promise<pg.QueryResult> {
    return this.onClient((client) => client.query(statement));
  }

  private async onClient(query: (client: pg.PoolClient) => Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    const client = this.client;
    if (client === undefined) {
      throw new InvalidQueryError('This connection handle was used after its transaction or withConnection callback ended');
    }
    try {
      return await query(client);
    } catch (error) {
      if (isConnectionUnusable(error)) {
        this.broken = true;
        this.db.markUnusable(client);
      }
      const mapped = this.db.mapError(error);
      this.firstError ??= mapped;
      throw mapped;
    }
  }

  /** @internal Detaches the handle from its connection (before the connection is released). */
  end(): void {
    this.client = undefined;
  }
}
