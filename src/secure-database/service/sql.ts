import { InvalidQueryError } from '../errors/query.errors.js';

// The server rejects Bind messages with more parameters than an Int16 can count.
const MAX_PARAMETERS = 65_535;
// NAMEDATALEN - 1: longer names would be truncated silently by the server.
const MAX_IDENTIFIER_BYTES = 63;
const TYPE_NAME = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;

// Text of flat templates, per call site: a template's strings array is the same object on every call.
const templateText = new WeakMap<readonly string[], string>();

/**
 * SQL text with bind parameters, made by the `sql` tag and its helpers. Values are never part of
 * the text: `text` has `$1 … $n` where they go and `values` holds them in order. Only instances of
 * this class are SQL; anything else interpolated (strings included) is a value, so data that merely
 * looks like a fragment (`{ text: '…' }` from JSON) can never become SQL.
 */
export class SqlFragment {
  private compiled?: string;

  /** @internal Use the `sql` tag. `strings.length === values.length + 1`; values are plain values only. */
  constructor(
    readonly strings: readonly string[],
    readonly values: readonly unknown[],
    private readonly fromTemplate = false,
  ) {}

  /** The statement with `$1 … $n` placeholders, numbered in order across nested fragments. */
  get text(): string {
    if (this.compiled !== undefined) return this.compiled;
    const cached = this.fromTemplate ? templateText.get(this.strings) : undefined;
    if (cached !== undefined) return (this.compiled = cached);
    const { strings } = this;
    if (strings.length > MAX_PARAMETERS + 1) throw new InvalidQueryError(`A query can have at most ${MAX_PARAMETERS} parameters (use sql.array for long lists)`);
    // A tagged template's text is undefined where it has an invalid escape sequence such as \u.
    if (strings.includes(undefined as unknown as string)) throw new InvalidQueryError('The sql template contains an invalid escape sequence');
    let text = strings[0];
    for (let i = 1; i < strings.length; i++) {
      // `${a}0` would read as $10: another parameter, or a silently different statement.
      if (/^[0-9]/.test(strings[i])) {
        throw new InvalidQueryError('A value in the sql template is directly followed by a digit (it would read as another $n): put a space or an operator between them');
      }
      text += `$${i}${strings[i]}`;
    }
    // The protocol ends the statement at a NUL: the server would see half of it (and close the connection).
    if (text.includes('\0')) throw new InvalidQueryError('SQL text must not contain a NUL character');
    if (this.fromTemplate) templateText.set(strings, text);
    return (this.compiled = text);
  }
}

/** Accumulates text and values, inlining nested fragments so their placeholders renumber. */
class FragmentBuilder {
  private readonly strings = [''];
  private readonly values: unknown[] = [];

  text(text: string): void {
    this.strings[this.strings.length - 1] += text;
  }

  value(value: unknown): void {
    if (!(value instanceof SqlFragment)) {
      if (value === undefined) throw new InvalidQueryError('An interpolated value is undefined (use null for SQL NULL)');
      this.values.push(value);
      this.strings.push('');
      return;
    }
    this.text(value.strings[0]);
    for (let i = 0; i < value.values.length; i++) {
      this.values.push(value.values[i]);
      this.strings.push(value.strings[i + 1]);
    }
  }

  build(): SqlFragment {
    return new SqlFragment(this.strings, this.values);
  }
}

// The language freezes a tagged template's strings and their raw twin; an array built at run time
// (from data) is not frozen unless someone set out to forge one.
function isTemplate(strings: unknown): strings is TemplateStringsArray {
  const raw = (strings as { raw?: unknown } | undefined)?.raw;
  return Array.isArray(strings) && Object.isFrozen(strings) && Array.isArray(raw) && Object.isFrozen(raw);
}

function template(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  // sql(userText) called as a function instead of a tag would make SQL of data: refused.
  if (!isTemplate(strings)) throw new InvalidQueryError('sql must be used as a tagged template: sql`SELECT … ${value}`');
  let nested = false;
  for (const value of values) {
    if (value instanceof SqlFragment) nested = true;
    else if (value === undefined) throw new InvalidQueryError('An interpolated value is undefined (use null for SQL NULL)');
  }
  if (!nested) return new SqlFragment(strings, values, true);
  if (strings.includes(undefined as unknown as string)) throw new InvalidQueryError('The sql template contains an invalid escape sequence');
  const builder = new FragmentBuilder();
  builder.text(strings[0]);
  for (let i = 0; i < values.length; i++) {
    builder.value(values[i]);
    builder.text(strings[i + 1]);
  }
  return builder.build();
}

/** `"part"."part"`, each part validated and with `"` doubled. */
function identifier(...parts: string[]): SqlFragment {
  if (parts.length === 0) throw new InvalidQueryError('sql.identifier needs at least one name');
  const quoted = parts.map((part) => {
    if (typeof part !== 'string' || part.length === 0) throw new InvalidQueryError('An identifier must be a non-empty string');
    if (part.includes('\0')) throw new InvalidQueryError('An identifier must not contain a NUL character');
    if (Buffer.byteLength(part, 'utf8') > MAX_IDENTIFIER_BYTES) throw new InvalidQueryError(`An identifier must be at most ${MAX_IDENTIFIER_BYTES} bytes long`);
    return `"${part.replaceAll('"', '""')}"`;
  });
  return new SqlFragment([quoted.join('.')], []);
}

const COMMA = new SqlFragment([', '], []);

/**
 * The items separated by `separator`, a fragment such as sql` AND ` (default `, `). Items that are
 * fragments nest; anything else, a plain string included, is a bind parameter.
 */
function join(items: readonly unknown[], separator: SqlFragment = COMMA): SqlFragment {
  if (!Array.isArray(items)) throw new InvalidQueryError('sql.join needs an array');
  const builder = new FragmentBuilder();
  for (let i = 0; i < items.length; i++) {
    if (i > 0) builder.value(separator);
    builder.value(items[i]);
  }
  return builder.build();
}

/** `$1, $2, …` for `IN (${sql.list(ids)})`. Refuses an empty list, which would be a syntax error. */
function list(values: readonly unknown[]): SqlFragment {
  if (!Array.isArray(values) || values.length === 0) {
    throw new InvalidQueryError('sql.list needs a non-empty array (for lists that may be empty use = ANY(${sql.array(values, type)}))');
  }
  return join(values);
}

/**
 * One array parameter cast to `type[]`, for `= ANY(${sql.array(ids, 'int4')})`: a single bind
 * parameter whatever the length, and an empty array is fine. `type` is a type name such as int4,
 * int8, text, uuid, timestamptz, float8 (optionally schema-qualified); anything else is refused.
 */
function array(values: readonly unknown[], type: string): SqlFragment {
  if (!Array.isArray(values)) throw new InvalidQueryError('sql.array needs an array of values');
  if (typeof type !== 'string' || !TYPE_NAME.test(type) || type.split('.').some((part) => part.length > MAX_IDENTIFIER_BYTES)) {
    throw new InvalidQueryError('sql.array needs a plain type name such as int4, text or uuid');
  }
  return new SqlFragment(['', `::${type}[]`], [values]);
}

/**
 * DANGER: `text` becomes SQL verbatim. Only for SQL written by the developer (constants, generated
 * DDL), NEVER for anything derived from user input, request data or database content: that is SQL
 * injection. Prefer values, sql.identifier, sql.list, sql.array and sql.join.
 */
function unsafeRaw(text: string): SqlFragment {
  if (typeof text !== 'string') throw new InvalidQueryError('sql.unsafeRaw needs a string');
  if (text.includes('\0')) throw new InvalidQueryError('SQL text must not contain a NUL character');
  return new SqlFragment([text], []);
}

/**
 * Tagged template for SQL with bind parameters: ``sql`SELECT * FROM users WHERE id = ${id}` `` sends
 * `SELECT * FROM users WHERE id = $1` with `[id]`. Interpolated values (strings included) are always
 * bind parameters, never text; interpolated fragments nest and their placeholders are renumbered.
 * `undefined` is refused (a misspelt property would otherwise turn into NULL).
 */
export const sql = Object.assign(template, { identifier, list, array, join, unsafeRaw });
