import type { QueryEvent } from './query-event.js';

/** Longest statement text a slow-query line carries in production (characters); longer texts are cut and marked. */
export const SLOW_QUERY_TEXT_LIMIT = 1000;
/** Slow-query lines per window at most; the rest are counted and the count is reported by the next line. */
export const SLOW_QUERY_LINES_PER_WINDOW = 10;
export const SLOW_QUERY_WINDOW_MS = 60_000;

interface WarnLogger {
  warn(message: string): void;
}

/**
 * DATABASE_SLOW_QUERY_MS: a warning per statement at or over the threshold, with its duration,
 * fingerprint and text (never values). In production the text is the normalised one (literals replaced
 * by `?`) cut to SLOW_QUERY_TEXT_LIMIT characters; in development the text as sent. At most
 * SLOW_QUERY_LINES_PER_WINDOW lines per SLOW_QUERY_WINDOW_MS, so a burst (a slow database makes every
 * query slow at once) cannot flood the log: the lines left out are counted in the next line written.
 */
export class SlowQueryLog {
  private windowStart = -Infinity;
  private written = 0;
  private suppressed = 0;

  constructor(
    readonly thresholdMs: number,
    private readonly logger: WarnLogger,
    private readonly verbose: boolean,
    private readonly now: () => number = () => performance.now(),
    private readonly linesPerWindow = SLOW_QUERY_LINES_PER_WINDOW,
    private readonly windowMs = SLOW_QUERY_WINDOW_MS,
  ) {}

  record(event: QueryEvent, normalized: string): void {
    if (event.durationMs < this.thresholdMs) return;
    const now = this.now();
    if (now - this.windowStart >= this.windowMs) {
      this.windowStart = now;
      this.written = 0;
    }
    if (this.written >= this.linesPerWindow) {
      this.suppressed++;
      return;
    }
    this.written++;
    const left = this.suppressed;
    this.suppressed = 0;
    this.logger.warn(this.line(event, normalized) + (left > 0 ? ` (${left} more slow ${left === 1 ? 'query was' : 'queries were'} not logged: at most ${this.linesPerWindow} lines per ${this.windowMs / 1000} s)` : ''));
  }

  private line(event: QueryEvent, normalized: string): string {
    const text = this.verbose ? event.text : cut(normalized);
    const where = [event.inTransaction && 'in a transaction', event.pipelined && 'pipelined', event.replica && 'on a replica', event.stream && 'stream'].filter(Boolean).join(', ');
    const outcome = event.outcome === 'ok' ? `${event.rows ?? 0} rows` : `failed ${event.errorCode}${event.sqlstate ? ` (SQLSTATE ${event.sqlstate})` : ''}`;
    return `Slow query: ${Math.round(event.durationMs)} ms (threshold ${this.thresholdMs} ms), ${event.operation}, ${outcome}${where ? `, ${where}` : ''}, fingerprint ${event.fingerprint}: ${text}`;
  }
}

function cut(text: string): string {
  return text.length <= SLOW_QUERY_TEXT_LIMIT ? text : `${text.slice(0, SLOW_QUERY_TEXT_LIMIT)}… [${text.length - SLOW_QUERY_TEXT_LIMIT} more characters]`;
}
