import type { DatabaseErrorCode } from '../../src/index.js';
import type { Outcome } from './http-load.js';

/** The codes a client may see while the database or the path to it is down. */
export const OUTAGE_CODES: readonly DatabaseErrorCode[] = ['DB_CONNECTION_FAILED', 'DB_CONNECT_TIMEOUT', 'DB_POOL_EXHAUSTED'];

/**
 * What a client must read for each code these specs can meet, written out here rather than taken from
 * the filter under test: status, the fixed message, and Retry-After (null: none).
 */
const FIXED_ANSWERS: Partial<Record<DatabaseErrorCode, { status: number; message: string; retryAfter: string | null }>> = {
  DB_CONNECTION_FAILED: { status: 503, message: 'The database is temporarily unavailable', retryAfter: '2' },
  DB_CONNECT_TIMEOUT: { status: 503, message: 'The database is temporarily unavailable', retryAfter: '2' },
  DB_POOL_EXHAUSTED: { status: 503, message: 'The service is busy; try again later', retryAfter: '1' },
  DB_TOO_MANY_CONNECTIONS: { status: 503, message: 'The service is busy; try again later', retryAfter: '2' },
  DB_SHUTTING_DOWN: { status: 503, message: 'The service is restarting; try again later', retryAfter: '1' },
  DB_STATEMENT_TIMEOUT: { status: 503, message: 'The database took too long to answer', retryAfter: null },
};

const describeOutcome = (o: Outcome) =>
  `${o.spec.method} ${o.spec.path} -> ${o.status ?? `${o.failure} ${o.failureCode ?? ''}`} after ${Math.round(o.endedAt - o.startedAt)} ms: ${JSON.stringify(o.body)}`;

/**
 * Why `o` is not a sanitized production database error with one of `codes`, or undefined when it is.
 * The body must be exactly the filter's fixed answer for its code (fixed message, code, SQLSTATE, no
 * detail), so it can carry no SQL, no table/column/constraint name and no submitted value; a 503 for a
 * retryable connection error must carry Retry-After.
 */
export function sanitizedErrorProblem(o: Outcome, codes: readonly DatabaseErrorCode[]): string | undefined {
  const body = o.body as { code?: DatabaseErrorCode; sqlstate?: unknown } | undefined;
  const code = body?.code;
  if (!code || !codes.includes(code)) return `expected one of ${codes.join('/')}: ${describeOutcome(o)}`;
  const expected = FIXED_ANSWERS[code];
  if (!expected) return `no pinned answer for ${code} in outcome-checks.ts: ${describeOutcome(o)}`;
  const exact = {
    statusCode: expected.status,
    message: expected.message,
    error: 'Service Unavailable',
    code,
    ...(body.sqlstate === undefined ? {} : { sqlstate: body.sqlstate }),
  };
  if (o.status !== expected.status || JSON.stringify(o.body) !== JSON.stringify(exact)) return `not the sanitized body: ${describeOutcome(o)}`;
  if (body.sqlstate !== undefined && !/^[0-9A-Z]{5}$/.test(String(body.sqlstate))) return `sqlstate is not a SQLSTATE: ${describeOutcome(o)}`;
  if (o.retryAfter !== expected.retryAfter) return `Retry-After ${o.retryAfter} instead of ${expected.retryAfter}: ${describeOutcome(o)}`;
  return undefined;
}

/** The answer a healthy app gives (a known user is found, an absent one is a 404). */
export function isExpected(o: Outcome): boolean {
  return o.status !== undefined && o.spec.expected.includes(o.status);
}

/**
 * Every outcome that is neither what a healthy app answers nor a sanitized error with one of `codes`
 * (none: no error allowed); hung requests always count.
 */
export function unexpectedOutcomes(outcomes: Outcome[], codes: readonly DatabaseErrorCode[] = []): string[] {
  const problems: string[] = [];
  for (const o of outcomes) {
    if (o.failure === 'timeout') problems.push(`hung: ${describeOutcome(o)}`);
    else if (isExpected(o)) continue;
    else if (o.status === undefined) problems.push(`no response: ${describeOutcome(o)}`);
    else problems.push(sanitizedErrorProblem(o, codes) ?? '');
  }
  return problems.filter(Boolean);
}

/** How many outcomes had each status / failure / code, for test names and reports. */
export function tally(outcomes: Outcome[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const o of outcomes) {
    const key = o.status === undefined ? `${o.failure}:${o.failureCode}` : `${o.status}${(o.body as { code?: string })?.code ? ` ${(o.body as { code: string }).code}` : ''}`;
    counts[key] = (counts[key] ?? 0) + 1;
  }
  return counts;
}

const failed = (o: Outcome) => !isExpected(o);

/**
 * Recovery after an outage, from the test's side. `since`: when the fault ended (the server accepts,
 * the path is back). `resumedAt` is the end of the first successful request that ended after it;
 * `stableAt` the end of the first successful request after the last failure (from then on nothing
 * failed). Undefined when nothing failed.
 */
export function recovery(outcomes: Outcome[], since: number): { failures: number; resumedAt?: number; stableAt?: number } | undefined {
  const byEnd = [...outcomes].sort((a, b) => a.endedAt - b.endedAt);
  const failures = byEnd.filter(failed);
  if (failures.length === 0) return undefined;
  const lastFailureAt = failures[failures.length - 1].endedAt;
  return {
    failures: failures.length,
    resumedAt: byEnd.find((o) => !failed(o) && o.endedAt > since)?.endedAt,
    stableAt: byEnd.find((o) => !failed(o) && o.endedAt > lastFailureAt)?.endedAt,
  };
}
