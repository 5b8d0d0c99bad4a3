import type { StandardSchemaV1 } from '@standard-schema/spec';
import type pg from 'pg';
import { InvalidQueryError, NotFoundError, ResultTooLargeError, TooManyRowsError } from '../errors/query.errors.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { type StatementEnvelope, queryBounded } from './bounded-query.js';
import type { BoundStatement, ResolvedSettings } from '../settings/database-settings.js';
import { type CallOptions, type ResolvedCallOptions, callOptionsOf, refuseInTransaction, throwIfAborted, withCallTimeout } from './cancellation.js';
import { type StatementCache, type StatementName, statementCacheFailure } from './statement-cache.js';
import { type RowOptions, type SchemaOutput, rowSchemaOf, validateRow, validateRows } from './row-schema.js';
import { statementFacts } from './statement-facts.js';
import { SqlFragment } from './sql.js';
import type { StatementRoute } from '../observability/query-event.js';

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

/** Per-call options of the buffered helpers `query` and `fetch`. */
export interface QueryOptions extends RowOptions, CallOptions {
  /**
   * Most rows this call may buffer, instead of the module's maxRows (DATABASE_MAX_ROWS); more is a
   * ResultTooLargeError. `Infinity` lifts the limit for this call: only for results known to be small.
   */
  maxRows?: number;
}

/** Options of the single-row helpers. */
export type RowCallOptions = RowOptions & CallOptions;

/** Options of `stream`. */
export interface StreamOptions extends RowOptions, CallOptions {
  /**
   * Rows fetched per round trip (default 500, or maxRows when lower): memory holds about one batch
   * whatever the result's size. At most the module's maxRows (DATABASE_MAX_ROWS).
   */
  batchSize?: number;
}

/** What a statement's caller keeps of its result; the path that sends it notes how (pipelined, cached) for query events. */
export interface ResultShape extends StatementRoute {
  rowMode?: 'array';
  /** Most rows to keep (more is a ResultTooLargeError); 0 keeps none, only the row count. */
  maxRows: number;
  /** The call's AbortSignal, statement_timeout and settings (CallOptions), validated. */
  signal?: AbortSignal;
  timeoutMs?: number;
  /** The settings the caller's statements run with (its own over those of its withSettings scope). */
  settings?: ResolvedSettings;
  /** Set by the runner: the set_config statement sent ahead of this one, in its round trip (see settings/). */
  settingsStatement?: BoundStatement;
}

export const DEFAULT_STREAM_BATCH_SIZE = 500;

/**
 * The query helpers shared by the service and the connection handles of `transaction` and
 * `withConnection`; type a repository's parameter as Queryable to accept any of them. Every query
 * is sent over the extended protocol (Parse/Bind/Execute in one round trip), so the server refuses
 * text with more than one statement. `params` are bind parameters, never text. Buffered results are
 * bounded (maxRows); `stream` reads any size in flat memory. The service names its autocommit
 * statements on direct connections (statement-cache.ts); handles never do.
 */
export abstract class Queryable {
  constructor(protected readonly db: DatabasePool) {}

  /** Sends one statement on the connection this handle stands for. */
  protected abstract run(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult>;

  /** Reads one statement's rows batch by batch on the connection this handle stands for. */
  protected abstract streamRows<R>(text: string, values: readonly unknown[] | undefined, batchSize: number, call: ResolvedCallOptions): AsyncGenerator<R>;

  /** Where a call runs: this handle, or (for the service, inside its transaction callback) the transaction's handle. */
  protected runner(): Queryable {
    return this;
  }

  /** Statements through this handle run inside transaction() (query events' inTransaction). */
  protected get inTransaction(): boolean {
    return false;
  }

  /** Every buffered statement goes through here: run where it belongs, reported to the pool's observer if it has one. */
  private runObserved(text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
    const runner = this.runner();
    const observer = runner.db.observer;
    if (observer === undefined) return runner.run(text, values, shape);
    return observer.statement(text, shape, runner.inTransaction, () => runner.run(text, values, shape));
  }

  /** Rows, row count, command tag and fields. With `{ schema }`, rows validated and typed by it. */
  query<S extends StandardSchemaV1>(query: SqlFragment, options: QueryOptions & { schema: S }): Promise<QueryResult<SchemaOutput<S>>>;
  query<S extends StandardSchemaV1>(text: string, params: readonly unknown[] | undefined, options: QueryOptions & { schema: S }): Promise<QueryResult<SchemaOutput<S>>>;
  query<R = Row>(query: SqlFragment, options?: QueryOptions): Promise<QueryResult<R>>;
  query<R = Row>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<R>>;
  async query<R = Row>(query: QueryInput, ...rest: unknown[]): Promise<QueryResult<R>> {
    return (await this.send(query, rest, undefined)) as QueryResult<R>;
  }

  /** All rows (at most maxRows). With `{ schema }`, validated and typed by it. */
  fetch<S extends StandardSchemaV1>(query: SqlFragment, options: QueryOptions & { schema: S }): Promise<SchemaOutput<S>[]>;
  fetch<S extends StandardSchemaV1>(text: string, params: readonly unknown[] | undefined, options: QueryOptions & { schema: S }): Promise<SchemaOutput<S>[]>;
  fetch<R = Row>(query: SqlFragment, options?: QueryOptions): Promise<R[]>;
  fetch<R = Row>(text: string, params?: readonly unknown[], options?: QueryOptions): Promise<R[]>;
  async fetch<R = Row>(query: QueryInput, ...rest: unknown[]): Promise<R[]> {
    return (await this.send(query, rest, undefined)).rows as R[];
  }

  /**
   * Exactly one row: NotFoundError on none, TooManyRowsError on more. The statement has run either
   * way; inside a transaction the error (left to propagate) rolls it back. With `{ schema }`, the row
   * validated and typed by it.
   */
  fetchrow<S extends StandardSchemaV1>(query: SqlFragment, options: RowCallOptions & { schema: S }): Promise<SchemaOutput<S>>;
  fetchrow<S extends StandardSchemaV1>(text: string, params: readonly unknown[] | undefined, options: RowCallOptions & { schema: S }): Promise<SchemaOutput<S>>;
  fetchrow<R = Row>(query: SqlFragment, options?: RowCallOptions): Promise<R>;
  fetchrow<R = Row>(text: string, params?: readonly unknown[], options?: RowCallOptions): Promise<R>;
  async fetchrow<R = Row>(query: QueryInput, ...rest: unknown[]): Promise<R> {
    const { rows } = await this.send(query, rest, undefined);
    if (rows.length === 0) throw new NotFoundError();
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    return rows[0] as R;
  }

  /** The row, or null when there is none; TooManyRowsError on more than one. With `{ schema }`, validated and typed by it. */
  fetchMaybeRow<S extends StandardSchemaV1>(query: SqlFragment, options: RowCallOptions & { schema: S }): Promise<SchemaOutput<S> | null>;
  fetchMaybeRow<S extends StandardSchemaV1>(
    text: string,
    params: readonly unknown[] | undefined,
    options: RowCallOptions & { schema: S },
  ): Promise<SchemaOutput<S> | null>;
  fetchMaybeRow<R = Row>(query: SqlFragment, options?: RowCallOptions): Promise<R | null>;
  fetchMaybeRow<R = Row>(text: string, params?: readonly unknown[], options?: RowCallOptions): Promise<R | null>;
  async fetchMaybeRow<R = Row>(query: QueryInput, ...rest: unknown[]): Promise<R | null> {
    const { rows } = await this.send(query, rest, undefined);
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    return (rows[0] as R | undefined) ?? null;
  }

  /** The first column of exactly one row (NotFoundError on none, TooManyRowsError on more). */
  fetchval<V = unknown>(query: SqlFragment, options?: CallOptions): Promise<V>;
  fetchval<V = unknown>(text: string, params?: readonly unknown[], options?: CallOptions): Promise<V>;
  async fetchval<V = unknown>(query: QueryInput, ...rest: unknown[]): Promise<V> {
    // Array rows: the first column even when a later column has the same name.
    const { rows, fields } = await this.send(query, rest, 'array');
    if (rows.length === 0) throw new NotFoundError();
    if (rows.length > 1) throw new TooManyRowsError(rows.length);
    if (fields.length === 0) throw new InvalidQueryError('fetchval needs a query that returns a column');
    return (rows[0] as unknown[])[0] as V;
  }

  /** Runs a statement; resolves to the number of rows it affected (0 when it reports none). Rows it returns are not kept. */
  execute(query: SqlFragment, options?: CallOptions): Promise<number>;
  execute(text: string, params?: readonly unknown[], options?: CallOptions): Promise<number>;
  async execute(query: QueryInput, ...rest: unknown[]): Promise<number> {
    const { text, values, options } = statementOf(query, rest);
    return (await this.runObserved(text, values, { maxRows: 0, ...callOf(options) })).rowCount ?? 0;
  }

  /**
   * The rows of one statement as an async iterable, fetched `batchSize` at a time through a cursor
   * (pg-cursor), so memory holds about one batch whatever the result's size, and the next batch is
   * only asked for when the loop wants it (a slow consumer makes nothing buffer). The connection is
   * held while iterating and always released: at the end, on an error, on `break`, and when the
   * loop's body throws. A consumer that pauses longer than streamIdleTimeoutMs between two rows
   * (DATABASE_STREAM_IDLE_TIMEOUT_MS, default the statement timeout) loses the stream: its connection
   * is freed and the next pull throws StreamIdleTimeoutError. The server's statement_timeout covers
   * the whole stream, from the first batch to the last, as the next read after a pause finds it; for
   * a long export raise it for that transaction alone: `tx.fetchval(sql\`SELECT
   * pg_catalog.set_config('statement_timeout', ${'10min'}, true)\`)` then `tx.stream(…)`. Nothing is
   * sent until the loop starts; iterate with `for await` (or call `return()`), which releases.
   *
   *   for await (const user of db.stream<User>(sql`SELECT id, email FROM users`)) …
   */
  stream<S extends StandardSchemaV1>(query: SqlFragment, options: StreamOptions & { schema: S }): AsyncGenerator<SchemaOutput<S>>;
  stream<S extends StandardSchemaV1>(text: string, params: readonly unknown[] | undefined, options: StreamOptions & { schema: S }): AsyncGenerator<SchemaOutput<S>>;
  stream<R = Row>(query: SqlFragment, options?: StreamOptions): AsyncGenerator<R>;
  stream<R = Row>(text: string, params?: readonly unknown[], options?: StreamOptions): AsyncGenerator<R>;
  stream<R = Row>(query: QueryInput, ...rest: unknown[]): AsyncGenerator<R> {
    const { text, values, options } = statementOf(query, rest);
    const schema = rowSchemaOf(options as StreamOptions);
    const { maxRows } = this.db.config;
    const batchSize = (options as StreamOptions).batchSize ?? Math.min(DEFAULT_STREAM_BATCH_SIZE, maxRows);
    if (!Number.isInteger(batchSize) || batchSize < 1) throw new InvalidQueryError('batchSize must be a whole number, at least 1');
    // A batch is held in memory whole (a batchSize of a million buffered the whole result): the row cap of buffered results bounds it too.
    if (batchSize > maxRows) {
      throw new InvalidQueryError(`batchSize must be at most ${maxRows}, the module's maxRows (DATABASE_MAX_ROWS), since each batch is held in memory: lower batchSize or raise DATABASE_MAX_ROWS`);
    }
    const runner = this.runner();
    const observer = runner.db.observer;
    const read = runner.streamRows<R>(text, values, batchSize, callOf(options));
    const rows = observer === undefined ? read : observer.stream(text, runner.inTransaction, read);
    return schema ? this.validated(rows, schema) : rows;
  }

  private async *validated<R>(rows: AsyncGenerator<R>, schema: StandardSchemaV1): AsyncGenerator<R> {
    let index = 0;
    // for await closes `rows` (releasing its connection) when validation throws or the consumer stops.
    for await (const row of rows) yield (await validateRow(schema, row, index++, this.db.config.verboseErrors)) as R;
  }

  private async send(query: QueryInput, rest: unknown[], rowMode: RowMode): Promise<pg.QueryResult> {
    const { text, values, options } = statementOf(query, rest);
    const maxRows = (options as QueryOptions).maxRows ?? this.db.config.maxRows;
    if (!(Number.isInteger(maxRows) && maxRows > 0) && maxRows !== Infinity) throw new InvalidQueryError('maxRows must be a whole number, at least 1, or Infinity');
    const schema = rowSchemaOf(options as RowOptions);
    const result = await this.runObserved(text, values, { rowMode, maxRows, ...callOf(options) });
    if (schema) result.rows = (await validateRows(schema, result.rows, this.db.config.verboseErrors)) as Row[];
    return result;
  }
}

/** The call options (signal, timeoutMs, settings), validated; an already aborted signal rejects here, before anything is sent. */
function callOf(options: object): ResolvedCallOptions {
  const call = callOptionsOf(options);
  throwIfAborted(call.signal);
  return call;
}

/** Text and values of a call `(text, params?, options?)` or `(sql\`…\`, options?)`, validated. */
function statementOf(query: QueryInput, [second, third]: unknown[]): { text: string; values: readonly unknown[] | undefined; options: object } {
  if (typeof query === 'string') {
    if (second !== undefined && !Array.isArray(second)) throw new InvalidQueryError('Query parameters must be an array');
    // The protocol ends the statement text at a NUL: refuse rather than have the server see half of it.
    if (query.includes('\0')) throw new InvalidQueryError('SQL text must not contain a NUL character');
    return { text: query, values: second as readonly unknown[] | undefined, options: optionsOf(third) };
  }
  if (!(query instanceof SqlFragment)) throw new InvalidQueryError('A query is SQL text or a sql`…` template');
  if (Array.isArray(second) || third !== undefined) throw new InvalidQueryError('A sql`…` template carries its own values: pass no parameter array');
  return { text: query.text, values: query.values, options: optionsOf(second) };
}

function optionsOf(value: unknown): object {
  if (value === undefined) return {};
  if (typeof value !== 'object' || value === null) throw new InvalidQueryError('Query options must be an object');
  return value;
}

/**
 * Sends one caller statement: over the extended protocol always (under `named`'s name, if given), with the
 * server cutting the result off after maxRows + 1 rows (see bounded-query.ts): a result over the
 * limit is a ResultTooLargeError that memory never held. Not for writes (INSERT, UPDATE, DELETE,
 * MERGE, or a WITH holding one): their RETURNING rows arrive after the write happened (in autocommit,
 * committed with the same Sync), so refusing them would report a failure for a change that stands and
 * invite a retry that makes it twice. A write returns all its rows; bound the write itself.
 */
export function runStatement(
  client: pg.ClientBase,
  text: string,
  values: readonly unknown[] | undefined,
  shape: ResultShape,
  envelope?: StatementEnvelope,
  named?: StatementName,
): Promise<pg.QueryResult> {
  const { maxRows, rowMode } = shape;
  if (shape.timeoutMs !== undefined || shape.settingsStatement !== undefined) {
    try {
      refuseInTransaction(client, shape);
    } catch (error) {
      return Promise.reject(error);
    }
    envelope = withCallTimeout(envelope, shape.timeoutMs);
    // Last before the caller's statement: nothing between them can change the settings again.
    if (shape.settingsStatement) {
      const { text, values } = shape.settingsStatement;
      const settings = named?.settings ? { text, values, name: named.settings.name, parsed: named.settings.parsed } : shape.settingsStatement;
      envelope = envelope ? { before: [...envelope.before, settings], after: envelope.after } : { before: [settings], after: NO_STATEMENTS };
    }
  }
  // Not async: the one promise is the statement's own (queryBounded rejects a result over maxRows itself).
  const limit = maxRows === 0 || maxRows === Infinity || statementFacts(text).write ? 0 : maxRows + 1;
  return queryBounded(client, { text, values: values as unknown[] | undefined, rowMode }, limit, maxRows !== 0, envelope, named);
}

/**
 * An autocommit statement under the name the connection's statement cache gives it (Parse once,
 * then Bind/Execute only). When the server says a named statement cannot be used (it never ran
 * then), it is retried once: re-prepared when its plan went stale after a schema change, unnamed
 * when the server does not keep the session's statements. Not for transactions: an error there
 * aborts the transaction, which is rerun whole instead (ScopedConnection, with the same cache).
 */
export async function runCached(client: pg.ClientBase, cache: StatementCache, text: string, values: readonly unknown[] | undefined, shape: ResultShape): Promise<pg.QueryResult> {
  // The settings statement (its text depends only on how many settings) is named too: the server
  // parses it once per connection, not once per statement. Its evictions ride with the statement's.
  const settings = shape.settingsStatement && cache.nameFor(client, shape.settingsStatement.text);
  const named = cache.nameFor(client, text);
  if (!named) return runStatement(client, text, values, shape);
  shape.cached = named.parsed === true;
  try {
    return await runStatement(client, text, values, shape, undefined, settings ? withSettingsName(named, settings) : named);
  } catch (error) {
    const failure = statementCacheFailure(error);
    if (failure === undefined) throw error;
    cache.forget(client, named.name);
    if (failure === 'stale') {
      // Closed and parsed again under the same name, in one write; the cache stays on.
      const again = cache.nameFor(client, text)!;
      shape.cached = false;
      return runStatement(client, text, values, shape, undefined, { ...again, evict: [named.name, ...(again.evict ?? [])] });
    }
    cache.distrust(client);
    shape.cached = false;
    return runStatement(client, text, values, shape);
  }
}

const NO_STATEMENTS: readonly [] = [];

function withSettingsName(named: StatementName, settings: StatementName): StatementName {
  return {
    name: named.name,
    parsed: named.parsed,
    evict: settings.evict ? [...settings.evict, ...(named.evict ?? [])] : named.evict,
    prepared: named.prepared,
    settings: { name: settings.name, parsed: settings.parsed === true },
  };
}
