import type pg from 'pg';
import { CopyDataError } from '../errors/copy.errors.js';
import { StatementTimeoutError } from '../errors/query.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { cancelledError } from '../service/cancellation.js';

type SocketHolder = { connection: { stream: { destroy(): void } } };

/**
 * A copy that does not complete leaves its connection mid-protocol (the server waiting for more rows,
 * or still sending them): it is marked unusable and its socket destroyed, so the server rolls the COPY
 * (and any transaction around it) back and the pool never hands the connection out again.
 */
export function discardConnection(db: DatabasePool, client: pg.ClientBase): void {
  db.markUnusable(client);
  (client as unknown as SocketHolder).connection.stream.destroy();
}

// The server's context line of a COPY error: "COPY <table>, line <n>[, column <c>][: "<value>"]".
const COPY_LINE = /^COPY .*?, line (\d+)/;

/**
 * A COPY's failure as the library's error. A bad value (SQLSTATE class 22, 22P04 bad copy format
 * among them) is a CopyDataError naming the row (the line of the server's context, one row per line
 * in the text format) and never the value; an abort is QueryCancelledError; anything else as every
 * driver error is mapped.
 */
export function copyError(db: DatabasePool, error: unknown, aborted: boolean): SecureDatabaseError {
  const mapped = db.mapError(error);
  if (aborted) return cancelledError(mapped);
  const sqlstate = (error as { code?: unknown }).code;
  if (typeof sqlstate !== 'string' || !sqlstate.startsWith('22')) return mapped;
  const where = (error as { where?: unknown }).where;
  const line = typeof where === 'string' ? COPY_LINE.exec(where)?.[1] : undefined;
  const row = line === undefined ? undefined : Number(line);
  const driver = db.config.verboseErrors && error instanceof Error ? `: ${error.message}` : '';
  return new CopyDataError(row, `COPY refused ${row === undefined ? 'a value' : `a value of row ${row}`} (SQLSTATE ${sqlstate})${driver}`, {
    sqlstate,
    cause: db.config.verboseErrors ? error : { code: sqlstate },
  });
}

// setTimeout's ceiling.
const MAX_TIMER_MS = 2_147_483_647;

/**
 * The statement timeout of a COPY, kept by the module. The server counts it only while it works: not
 * while it waits for the next rows of a COPY FROM STDIN, nor while a COPY TO waits for a slow reader
 * (blocked socket reads and writes only honour a terminate). So a copy whose rows stall, or whose
 * reader stops, would hold its connection for ever: past `timeoutMs` from its start (0: none) the
 * connection is discarded, and `expired()` says so for the error.
 */
export class CopyDeadline {
  private timer?: NodeJS.Timeout;
  private passed = false;

  constructor(db: DatabasePool, client: pg.ClientBase, readonly timeoutMs: number) {
    if (timeoutMs <= 0) return;
    this.timer = setTimeout(() => {
      this.passed = true;
      discardConnection(db, client);
    }, Math.min(timeoutMs, MAX_TIMER_MS));
  }

  get expired(): boolean {
    return this.passed;
  }

  error(): StatementTimeoutError {
    return new StatementTimeoutError(`the COPY did not finish within the statement timeout (${this.timeoutMs} ms), so its connection was closed and nothing of it was kept`);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

/**
 * Clears the client-side timer pg armed for a COPY TO (its query_timeout, set to the ceiling because
 * CopyDeadline bounds the copy instead). pg clears it only through the query's callback, which
 * pg-copy-streams' COPY TO never calls (its COPY FROM does, at the end and on an error): left armed,
 * each copy would hold its client and keep the process alive for 24 days.
 */
export function disarmClientTimer(copy: unknown): void {
  (copy as { callback?: () => void }).callback?.();
}

/** A COPY's statement timeout: the call's timeoutMs, else the module's statement timeout. */
export function copyTimeoutMs(db: DatabasePool, timeoutMs: number | undefined): number {
  return timeoutMs ?? db.config.serverTimeouts.statementTimeoutMs;
}
