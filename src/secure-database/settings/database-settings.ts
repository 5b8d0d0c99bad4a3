import { InvalidQueryError } from '../errors/query.errors.js';

/** A setting's value as given: sent as text, always as a bind parameter. */
export type SettingValue = string | number | bigint | boolean;

/**
 * Custom settings (`prefix.name`) for the statements of one call or one `withSettings` scope, e.g.
 * `{ 'app.tenant_id': '42' }`, read by Row-Level Security policies with
 * `current_setting('app.tenant_id', true)`. Applied transaction-locally: they never outlive the
 * statement (or transaction) they were given for.
 */
export type DatabaseSettings = Readonly<Record<string, SettingValue>>;

/** Settings validated: lower-cased names (PostgreSQL's own spelling of them) → values as text. */
export type ResolvedSettings = ReadonlyMap<string, string>;

// PostgreSQL's custom ("placeholder") settings: two or more identifiers joined by dots. Built-in
// settings (role, session_authorization, search_path …) have no dot, so none can be given here.
const CUSTOM_NAME = /^[a-z_][a-z0-9_$]*(?:\.[a-z_][a-z0-9_$]*)+$/;
// Extensions' settings share the form but change what the server does (what gets logged, planned,
// audited): not an app's to set per request.
const EXTENSION_PREFIXES = new Set(['plpgsql', 'pg_stat_statements', 'auto_explain', 'pgaudit', 'pg_hint_plan', 'pg_trgm']);
const MAX_NAME_LENGTH = 200;

// Names already validated (a few fixed names per app, given on every call): no regular expression per call.
const validNames = new Map<string, string>();
const VALID_NAMES_MAX = 1_000;

function settingName(name: string): string {
  const known = validNames.get(name);
  if (known !== undefined) return known;
  const lower = validatedName(name);
  if (validNames.size >= VALID_NAMES_MAX) validNames.clear();
  validNames.set(name, lower);
  return lower;
}

function validatedName(name: string): string {
  const lower = name.toLowerCase();
  if (lower.length > MAX_NAME_LENGTH || !CUSTOM_NAME.test(lower)) {
    throw new InvalidQueryError(
      `settings: "${name.length > MAX_NAME_LENGTH ? `${name.slice(0, 40)}…` : name}" is not a custom setting name: give prefix.name (letters, digits and _, e.g. app.tenant_id); ` +
        "built-in settings such as role, session_authorization or search_path cannot be set per call (they would change who the statement runs as or what it resolves)",
    );
  }
  if (EXTENSION_PREFIXES.has(lower.slice(0, lower.indexOf('.')))) {
    throw new InvalidQueryError(`settings: "${name}" belongs to a PostgreSQL extension, not to the app: use a prefix of your own (e.g. app.)`);
  }
  return lower;
}

function settingValue(name: string, value: unknown): string {
  const type = typeof value;
  if (type !== 'string' && type !== 'number' && type !== 'bigint' && type !== 'boolean') {
    // The value itself is never echoed: it may be a secret (a claim, a token).
    throw new InvalidQueryError(
      `settings: the value of "${name}" is ${value === null ? 'null' : type}: give a string, number, bigint or boolean (leave the name out for no value; a statement without it sees it empty)`,
    );
  }
  const text = String(value);
  if (text.includes('\0')) throw new InvalidQueryError(`settings: the value of "${name}" contains a NUL character, which PostgreSQL cannot store`);
  return text;
}

/** `settings` validated (names and values), or undefined when there are none. */
export function resolveSettings(settings: unknown): ResolvedSettings | undefined {
  if (settings === undefined) return undefined;
  if (typeof settings !== 'object' || settings === null || Array.isArray(settings) || settings instanceof Map) {
    throw new InvalidQueryError("settings must be a plain object of setting names and values, e.g. { 'app.tenant_id': '42' }");
  }
  const resolved = new Map<string, string>();
  for (const [name, value] of Object.entries(settings)) resolved.set(settingName(name), settingValue(name, value));
  return resolved.size === 0 ? undefined : resolved;
}

/** `inner`'s values over `outer`'s. */
export function mergeSettings(outer: ResolvedSettings | undefined, inner: ResolvedSettings | undefined): ResolvedSettings | undefined {
  if (!outer) return inner;
  if (!inner) return outer;
  return new Map([...outer, ...inner]);
}

/** A statement with bound values, sent ahead of a caller's in the same round trip (see StatementEnvelope). */
export interface BoundStatement {
  text: string;
  values: readonly string[];
  /** Sent under this prepared statement's name (the statement cache's), parsed already on the connection or not. */
  name?: string;
  parsed?: boolean;
}

// The statement texts by number of settings, transaction-local and session-level.
const statementTexts: [string[], string[]] = [[], []];

/**
 * `SELECT pg_catalog.set_config($1, $2, true), …`: names and values bound, never in the text (which
 * depends only on how many settings there are). `local` false sets them for the session
 * (withConnection, whose session is reset on release).
 */
export function setConfigStatement(settings: Iterable<readonly [string, string]>, local = true): BoundStatement {
  const values: string[] = [];
  for (const [name, value] of settings) values.push(name, value);
  const texts = statementTexts[local ? 0 : 1];
  let text = texts[values.length];
  if (text === undefined) {
    const calls: string[] = [];
    for (let i = 1; i < values.length; i += 2) calls.push(`pg_catalog.set_config($${i}, $${i + 1}, ${local})`);
    texts[values.length] = text = `SELECT ${calls.join(', ')}`;
  }
  return { text, values };
}

// More distinct names than any app uses: each is set on every later statement (see SettingsInUse).
const MAX_NAMES_IN_USE = 64;

/**
 * The setting names one connection's statements have been given so far. Every later statement of
 * that connection that is not given one of them runs with it empty (what `current_setting(name,
 * true)` then returns), transaction-locally: a value left in a server session by anything (a
 * function's set_config(…, false), ALTER ROLE … SET, a statement the module could not recognise)
 * can never apply to a caller who did not ask for it. A name joins once a statement that carried it
 * succeeded (the server accepted it).
 */
export class SettingsInUse {
  private readonly names = new Set<string>();

  get empty(): boolean {
    return this.names.size === 0;
  }

  /** Every name in use, with `settings`' value or empty; undefined when there is nothing to set. */
  complete(settings: ResolvedSettings | undefined): ResolvedSettings | undefined {
    if (this.names.size === 0) return settings;
    // The usual case: the call gives every name in use (and maybe new ones).
    if (settings && settings.size >= this.names.size && this.covers(settings)) return settings;
    const complete = new Map<string, string>();
    for (const name of this.names) complete.set(name, '');
    if (settings) for (const [name, value] of settings) complete.set(name, value);
    return complete;
  }

  private covers(settings: ResolvedSettings): boolean {
    for (const name of this.names) if (!settings.has(name)) return false;
    return true;
  }

  /** The statement that applies `settings` (and empties the other names in use), if any. */
  statement(settings: ResolvedSettings | undefined, local = true): BoundStatement | undefined {
    const complete = this.complete(settings);
    return complete ? setConfigStatement(complete, local) : undefined;
  }

  /** `settings` were accepted by the server. */
  remember(settings: ResolvedSettings | undefined): void {
    if (!settings || (settings.size === this.names.size && this.covers(settings))) return;
    for (const name of settings.keys()) {
      if (this.names.has(name)) continue;
      if (this.names.size >= MAX_NAMES_IN_USE) {
        throw new InvalidQueryError(`settings: more than ${MAX_NAMES_IN_USE} different setting names were used; setting names are meant to be a few fixed names (app.tenant_id …), not data`);
      }
      this.names.add(name);
    }
  }
}
