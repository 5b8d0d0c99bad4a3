import type pg from 'pg';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { PoolMetrics, StatementCacheCounts } from './database-metrics.js';
import { type QueryEvent, type QueryEventHook, type StatementRoute, operationOf } from './query-event.js';
import type { SlowQueryLog } from './slow-query-log.js';
import { statementShape } from './statement-fingerprint.js';

interface WarnLogger {
  warn(message: string): void;
}

/**
 * Everything observed of one pool: each caller statement (query events, the slow-query log, the
 * operation duration) and the pool's connection events (connection metrics). A pool has one only
 * when something listens (onQuery, DATABASE_SLOW_QUERY_MS, a meter provider): without, the statement
 * path checks one property and goes on.
 */
export class DatabaseObserver {
  private hookFailed = false;

  constructor(
    /** The connection's name in events and in db.client.connection.pool.name. */
    readonly connection: string,
    private readonly replica: boolean,
    private readonly logger: WarnLogger,
    private readonly onQuery?: QueryEventHook,
    private readonly slowQueries?: SlowQueryLog,
    readonly metrics?: PoolMetrics,
  ) {}

  /** Runs one buffered statement (`run`) and reports it once it settled; its result or error passes through unchanged. */
  async statement(text: string, route: StatementRoute, inTransaction: boolean, run: () => Promise<pg.QueryResult>): Promise<pg.QueryResult> {
    const started = performance.now();
    try {
      const result = await run();
      this.report(text, route, inTransaction, false, started, result.rowCount, result.command, undefined);
      return result;
    } catch (error) {
      this.report(text, route, inTransaction, false, started, null, undefined, error);
      throw error;
    }
  }

  /** Passes a stream's rows through and reports it once, when it ended, failed or was left (break, return). */
  async *stream<R>(text: string, inTransaction: boolean, rows: AsyncGenerator<R>): AsyncGenerator<R> {
    const started = performance.now();
    let count = 0;
    let failure: unknown;
    try {
      for await (const row of rows) {
        count++;
        yield row;
      }
    } catch (error) {
      failure = error;
      throw error;
    } finally {
      this.report(text, {}, inTransaction, true, started, failure === undefined ? count : null, undefined, failure);
    }
  }

  watchStatementCache(cache: StatementCacheCounts): void {
    this.metrics?.watchStatementCache(cache);
  }

  private report(
    text: string,
    route: StatementRoute,
    inTransaction: boolean,
    stream: boolean,
    started: number,
    rows: number | null,
    command: string | undefined,
    error: unknown,
  ): void {
    const durationMs = performance.now() - started;
    const { normalized, fingerprint } = statementShape(text);
    const operation = command || operationOf(normalized);
    const failure = error as Partial<SecureDatabaseError> | undefined;
    const errorCode = error === undefined ? undefined : typeof failure?.code === 'string' ? failure.code : 'DB_UNKNOWN';
    const sqlstate = error === undefined ? undefined : failure?.sqlstate;
    if (this.metrics) {
      this.metrics.operation(durationMs / 1000, operation, errorCode, sqlstate);
      if (errorCode === 'DB_RESULT_TOO_LARGE') this.metrics.rowCapRefused();
    }
    if (!this.onQuery && !this.slowQueries) return;
    const event: QueryEvent = {
      connection: this.connection,
      text,
      fingerprint,
      operation,
      durationMs,
      rows: error === undefined ? rows : null,
      outcome: error === undefined ? 'ok' : 'error',
      ...(errorCode !== undefined ? { errorCode } : {}),
      ...(sqlstate !== undefined ? { sqlstate } : {}),
      pipelined: route.pipelined === true,
      cached: route.cached === true,
      inTransaction,
      replica: this.replica,
      stream,
    };
    this.slowQueries?.record(event, normalized);
    if (this.onQuery) {
      try {
        this.onQuery(event);
      } catch (hookError) {
        // The statement's outcome is the caller's; a broken hook is reported once, never thrown.
        if (!this.hookFailed) {
          this.hookFailed = true;
          this.logger.warn(`The onQuery hook threw; its errors are ignored from now on: ${hookError instanceof Error ? hookError.name : typeof hookError}`);
        }
      }
    }
  }

  /** A new connection passed its checks, `ms` after it was asked for (TCP, TLS, authentication, the TLS assertion). */
  connectionCreated(ms: number): void {
    this.metrics?.connectionCreated(ms / 1000);
  }

  /** A caller got a pooled connection after `ms`. */
  acquired(ms: number): void {
    this.metrics?.waited(ms / 1000);
  }

  /** No pooled connection became free within the acquire timeout. */
  acquireTimedOut(): void {
    this.metrics?.timedOut();
  }

  close(): void {
    this.metrics?.close();
  }
}
