import pgUtils from 'pg/lib/utils.js';

/**
 * PostgreSQL's COPY text format (the default of COPY … FROM STDIN / TO STDOUT): one line per row,
 * fields separated by a tab, `\N` for NULL, and a backslash escape for the four characters that would
 * otherwise end a field or a row (backslash, tab, newline, carriage return). Each value is first turned
 * into the text pg would send as a bind parameter (pg's own prepareValue: Dates as pg sends them,
 * arrays as array literals, objects as JSON, `toPostgres()` honoured), so a value means the same in
 * copyFrom as in query(); bytea is `\x` hex. Text is exact for every type, so binary format is not
 * needed (its only gain, skipping the server's text parsing, does not bound this path: see the bench).
 */

const { prepareValue } = pgUtils as { prepareValue(value: unknown): string | Buffer | null };

const YEAR_1 = -62135596800000; // 0001-01-01T00:00:00Z
const YEAR_10000 = 253402300800000; // 10000-01-01T00:00:00Z
const NEEDS_ESCAPE = /[\\\t\n\r]/;
const ESCAPES = /[\\\t\n\r]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\t': '\\t', '\n': '\\n', '\r': '\\r' };

/** Why `value` cannot be sent, or undefined. Never quotes the value. */
export type FieldProblem = 'a NUL character (PostgreSQL text cannot hold one)' | 'an invalid Date' | 'a function or symbol';

export class CopyFieldError extends Error {
  /** 1-based, set by encodeRow. */
  column?: number;

  constructor(readonly problem: FieldProblem) {
    super(problem);
  }
}

function escapeText(text: string): string {
  if (text.includes('\0')) throw new CopyFieldError('a NUL character (PostgreSQL text cannot hold one)');
  return NEEDS_ESCAPE.test(text) ? text.replace(ESCAPES, (c) => ESCAPED[c]) : text;
}

/** One field of a row, escaped for the text format. */
export function encodeField(value: unknown): string {
  if (value === null || value === undefined) return '\\N';
  switch (typeof value) {
    case 'string':
      return escapeText(value);
    case 'number':
      // -0 survives the round trip to float8 (String(-0) is "0").
      return Object.is(value, -0) ? '-0' : String(value);
    case 'bigint':
      return String(value);
    case 'boolean':
      return value ? 't' : 'f';
    case 'function':
    case 'symbol':
      throw new CopyFieldError('a function or symbol');
  }
  if (value instanceof Date) {
    const time = value.getTime();
    if (Number.isNaN(time)) throw new CopyFieldError('an invalid Date');
    // Where the process runs in UTC, pg's own form (local time with its offset) is the ISO form: same
    // wall time, same instant, for timestamp and timestamptz alike; far cheaper. Years 1–9999 only.
    if (value.getTimezoneOffset() === 0 && time >= YEAR_1 && time < YEAR_10000) return value.toISOString();
  }
  const prepared = prepareValue(value);
  if (prepared === null) return '\\N';
  // bytea's hex input form; its backslash is escaped like any other.
  if (Buffer.isBuffer(prepared)) return `\\\\x${prepared.toString('hex')}`;
  return escapeText(prepared);
}

/** One row as a line of the text format (with its newline). */
export function encodeRow(row: readonly unknown[]): string {
  let i = 0;
  try {
    let line = encodeField(row[0]);
    for (i = 1; i < row.length; i++) line += '\t' + encodeField(row[i]);
    return line + '\n';
  } catch (error) {
    if (error instanceof CopyFieldError) error.column = i + 1;
    throw error;
  }
}

const UNESCAPED: Record<string, string> = { b: '\b', f: '\f', n: '\n', r: '\r', t: '\t', v: '\v', '\\': '\\' };
const DECODE = /\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))/gs;

/** One field of the text format, as PostgreSQL's COPY FROM reads it: null for `\N`. */
export function decodeField(field: string): string | null {
  if (field === '\\N') return null;
  if (!field.includes('\\')) return field;
  return field.replace(DECODE, (_match, octal: string | undefined, hex: string | undefined, other: string) => {
    if (octal !== undefined) return String.fromCharCode(parseInt(octal, 8) & 0xff);
    if (hex !== undefined) return String.fromCharCode(parseInt(hex, 16));
    return UNESCAPED[other] ?? other;
  });
}

/** One line of the text format (without its newline) as its fields. */
export function decodeRow(line: string): Array<string | null> {
  return line.split('\t').map(decodeField);
}
