import type pg from 'pg';
import { InvalidQueryError, NotFoundError, TooManyRowsError } from '../errors/query.errors.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { SqlFragment } from './sql.js';

/** A row as node-postgres returns it: column name → parsed value. */
export type Row = Record<string, unknown>;

/** SQL text with `$n` placeholders, or a `sql` template (which carries its own values). */
export type QueryInput = string | SqlFragment;

export interface QueryResult<R = Row> {
  rows: R[];
  /** Rows returned or affected; null for statements that report no count (DDL, SET …). */
  rowCount: number | null;
  /** The command tag: SELECT, INSERT, UPDATE … */
  command: string;
  fields: pg.FieldDef[];
}

type RowMode = 'array' | undefined;

/**
 * The query helpers shared by the service and the connection handles of `transaction` and
 * `withConnection`; type a repository's parameter as Queryable to accept any of them. Every query
 * is sent over the extended protocol (Parse/Bind/Execute in one round trip), so the server refuses
 * text with more than one statement, and never under a name: named prepared statements break
 * PgBouncer/Supavisor in transaction mode. `params` are bind parameters, never text.
 */
export abstract class Queryable {
  constructor(protected readonly db: DatabasePool) {}

  /** Sends one statement on the connection this handle stands for. */
  protected abstract run(text: string, values: readonly unknown[] | undefined, rowMode: RowMode): Promise<pg.QueryResult>;

  /** Rows, row count, command tag and fields. */
  query<R = Row>(query: SqlFragment): Promise<QueryResult<R>>;
  query<R = Row>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  async query<R = Row>(query: QueryInput, params?: readonly unknown[]): Promise<QueryResult<R>> {
    return (await this.send(query, params, undefined)) as QueryResult<R>;
  }

  /** All rows. */
  fetch<R = Row>(query: SqlFragment): Promise<R[]>;
  fetch<R = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
  async fetch<R = Row>(query: QueryInput, params?: readonly unknown[]): Promise<R[]> {
    return (await this.send(query, params, undefined)).rows as R[];
  }

  /**
   * Exactly one row: NotFoundError on none, TooManyRowsError on more. The statement has run either
   * way; inside a transaction the error (left to propagate) rolls it back.
   */
  fetchrow<R = Row>(query: SqlFragment): Promise<R>;
  fetchrow<R = Row>(text: string, params?: readonly unknown[]): Promise<R>;
  async fetchrow<R = Row>(query: QueryInput, params?: readonly unknown[]): Promise<R> {
    const { rows } = await this.send(query, params, undefined);
    if (rows.length === 0) throw new NotFoundError();
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    return rows[0] as R;
  }

  /** The row, or null when there is none; TooManyRowsError on more than one. */
  fetchMaybeRow<R = Row>(query: SqlFragment): Promise<R | null>;
  fetchMaybeRow<R = Row>(text: string, params?: readonly unknown[]): Promise<R | null>;
  async fetchMaybeRow<R = Row>(query: QueryInput, params?: readonly unknown[]): Promise<R | null> {
    const { rows } = await this.send(query, params, undefined);
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    return (rows[0] as R | undefined) ?? null;
  }

  /** The first column of exactly one row (NotFoundError on none, TooManyRowsError on more). */
  fetchval<V = unknown>(query: SqlFragment): Promise<V>;
  fetchval<V = unknown>(text: string, params?: readonly unknown[]): Promise<V>;
  async fetchval<V = unknown>(query: QueryInput, params?: readonly unknown[]): Promise<V> {
    // Array rows: the first column even when a later column has the same name.
    const { rows, fields } = await this.send(query, params, 'array');
    if (rows.length === 0) throw new NotFoundError();
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    if (fields.length === 0) throw new InvalidQueryError('fetchval needs a query that returns a column');
    return (rows[0] as unknown[])[0] as V;
  }

  /** Runs a statement; resolves to the number of rows it affected (0 when it reports none). */
  execute(query: SqlFragment): Promise<number>;
  execute(text: string, params?: readonly unknown[]): Promise<number>;
  async execute(query: QueryInput, params?: readonly unknown[]): Promise<number> {
    return (await this.send(query, params, undefined)).rowCount ?? 0;
  }

  private send(query: QueryInput, params: readonly unknown[] | undefined, rowMode: RowMode): Promise<pg.QueryResult> {
    if (typeof query === 'string') {
      if (params !== undefined && !Array.isArray(params)) throw new InvalidQueryError('Query parameters must be an array');
      // The protocol ends the statement text at a NUL: refuse rather than have the server see half of it.
      if (query.includes('\0')) throw new InvalidQueryError('SQL text must not contain a NUL character');
      return this.run(query, params, rowMode);
    }
    if (!(query instanceof SqlFragment)) throw new InvalidQueryError('A query is SQL text or a sql`…` template');
    if (params !== undefined) throw new InvalidQueryError('A sql`…` template carries its own values: pass no parameter array');
    return this.run(query.text, query.values, rowMode);
  }
}

// Command tags of statements whose effect outlives them on the connection: settings (SET, SET ROLE,
// SET search_path; SET LOCAL too, harmlessly), LISTEN, prepared statements, WITH HOLD cursors,
// loaded libraries, temporary tables. A connection that ran one is reset before anyone else gets it.
// Not seen: state changed by a function inside a SELECT (set_config, pg_advisory_lock): use withConnection.
const SESSION_COMMANDS = new Set(['SET', 'RESET', 'LISTEN', 'PREPARE', 'DECLARE CURSOR', 'LOAD', 'CREATE TABLE']);

/** True when the statement left state on its connection that the next caller must not inherit. */
export function changesSession(result: pg.QueryResult): boolean {
  return SESSION_COMMANDS.has(result.command);
}

/**
 * Sends one caller statement: over the extended protocol always, never under a name. With
 * parameters pg uses the extended protocol by itself, and the `(text, values)` form also spares
 * pg's copy of a query config object (a measurable cost per query); without parameters, or for
 * array rows, the config object says `queryMode: 'extended'` explicitly.
 */
export function runStatement(client: pg.ClientBase, text: string, values: readonly unknown[] | undefined, rowMode: RowMode): Promise<pg.QueryResult> {
  if (rowMode === undefined && values !== undefined && values.length > 0) return client.query(text, values as unknown[]);
  return client.query({ text, values: values as unknown[] | undefined, queryMode: 'extended', rowMode } as pg.QueryConfig);
}
