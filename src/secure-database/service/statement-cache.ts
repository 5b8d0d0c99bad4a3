import { createHash, randomBytes } from 'node:crypto';
import type pg from 'pg';

/**
 * Longest statement text that is ever named (characters). Longer texts (a `sql.list()` of thousands of
 * values, say) run unnamed: each named one costs its parse tree and plan in the server backend for as
 * long as the connection lives, and such texts rarely repeat.
 */
export const MAX_NAMED_TEXT_LENGTH = 16_384;

/** Total length of the texts named on one connection at most; least recently used closed first past it. */
export const CONNECTION_TEXT_BUDGET = 512 * 1024;

// Text → name memo of this cache (names are derived from the text, so forgetting one is harmless).
const MEMO_TEXT_BUDGET = 8 * 1024 * 1024;

// 26000/42P05 answers after which the cache is switched off.
const DISTRUST_LIMIT = 3;

interface PgConnectionStatements {
  parsedStatements: Record<string, string>;
  submittedNamedStatements?: Record<string, string>;
}

/** pg's row parsing state built from a RowDescription (lib/result.js: fields, _parsers, _prebuiltEmptyResultObject). */
export interface RowLayout {
  fields: pg.FieldDef[];
  parsers: unknown[] | undefined;
  emptyRow: object | null;
}

/**
 * One named statement on one connection, for as long as the connection's cache holds it. Once an
 * execution described its result (RowDescription, or NoData), later executions send Bind/Execute only
 * and parse rows with the layout kept here, one per row mode (object rows, maybe renamed by rowCase,
 * and array rows). Dropped with the name (eviction, DISCARD ALL, a stale plan), so a description
 * arriving late for a forgotten statement lands on an entry nobody reads any more.
 */
export interface PreparedStatement {
  readonly name: string;
  readonly length: number;
  /** The fields the server described, as it sent them (names not renamed); [] for a statement without rows. */
  described?: readonly pg.FieldDef[];
  objectRows?: RowLayout;
  arrayRows?: RowLayout;
}

/** What a statement is sent under on one connection. */
export interface StatementName {
  name: string;
  /** The connection has it parsed already (a hit: Bind/Execute only). */
  parsed?: boolean;
  /** Statements to close first (the connection's least recently used ones, or a stale one), in the same write. */
  evict?: string[];
  /** The connection's entry for this name (its kept row description), absent for a one-off name. */
  prepared?: PreparedStatement;
  /** The name of the settings statement sent ahead of this one (see settings/), when it has one. */
  settings?: { name: string; parsed: boolean };
}

/**
 * Named prepared statements per connection, so the server parses and plans each distinct statement
 * once per connection and later executions send only Bind and Execute.
 *
 * A name is this cache's random prefix plus a hash of the text: it cannot be another process's (or
 * another module's) name, so a server connection that a pooler the module does not know about hands
 * from one application to another never runs someone else's statement under our name. There it is
 * simply missing (26000): retried unnamed, and after a few such answers the cache is off (distrust).
 *
 * Each connection keeps at most `capacity` statements and CONNECTION_TEXT_BUDGET characters of text,
 * least recently used closed first (Close rides in the next statement's write); texts over
 * MAX_NAMED_TEXT_LENGTH are never named. Off when capacity is 0 (behind a transaction pooler).
 */
export class StatementCache {
  private readonly prefix = `nsp${randomBytes(6).toString('hex')}_`;
  private readonly memo = new Map<string, string>();
  private memoLength = 0;
  /** Per connection: name → its entry, least recently used first. */
  private readonly perConnection = new WeakMap<pg.ClientBase, { names: Map<string, PreparedStatement>; length: number; closing?: string[] }>();
  private disabled: boolean;
  private distrusted = 0;
  /** Statements sent under a name their connection had parsed already (for metrics). */
  hits = 0;
  /** Statements closed to keep a connection within capacity or its text budget (for metrics). */
  evictions = 0;

  constructor(private readonly capacity: number) {
    this.disabled = capacity === 0;
  }

  get enabled(): boolean {
    return !this.disabled;
  }

  /** The name to send `text` under on `client`, or undefined to send it unnamed. */
  nameFor(client: pg.ClientBase, text: string): StatementName | undefined {
    if (this.disabled || text.length > MAX_NAMED_TEXT_LENGTH) return undefined;
    const name = this.nameOf(text);
    let used = this.perConnection.get(client);
    if (!used) this.perConnection.set(client, (used = { names: new Map(), length: 0 }));
    // Stale statements still on the server (see stale()): closed in this statement's write.
    let evict = used.closing;
    used.closing = undefined;
    let prepared = used.names.get(name);
    if (prepared) {
      this.hits++;
      // Most recently used last; already within budget, so nothing else to evict.
      if (used.names.size > 1) {
        used.names.delete(name);
        used.names.set(name, prepared);
      }
      return evict ? { name, parsed: true, evict, prepared } : { name, parsed: true, prepared };
    }
    prepared = { name, length: text.length };
    used.names.set(name, prepared);
    used.length += text.length;
    while (used.names.size > this.capacity || used.length > CONNECTION_TEXT_BUDGET) {
      const oldest = used.names.values().next().value as PreparedStatement;
      used.names.delete(oldest.name);
      used.length -= oldest.length;
      this.forgetParsed(client, oldest.name);
      (evict ??= []).push(oldest.name);
      this.evictions++;
    }
    return evict ? { name, parsed: false, evict, prepared } : { name, parsed: false, prepared };
  }

  /** The connection's statements are gone (DISCARD ALL, DEALLOCATE) or in doubt: parse again next time. */
  forget(client: pg.ClientBase, name?: string): void {
    const used = this.perConnection.get(client);
    if (name === undefined) {
      for (const each of used?.names.keys() ?? []) this.forgetParsed(client, each);
      this.perConnection.delete(client);
      return;
    }
    const prepared = used?.names.get(name);
    if (used && prepared !== undefined) {
      used.names.delete(name);
      used.length -= prepared.length;
    }
    this.forgetParsed(client, name);
  }

  /**
   * A statement's plan went stale (0A000) where it cannot be retried at once (inside a transaction, which
   * the server has aborted): forgotten, and closed on the server in the connection's next named statement's
   * write, so parsing it again under its name does not collide (42P05).
   */
  stale(client: pg.ClientBase, name: string): void {
    this.forget(client, name);
    const used = this.perConnection.get(client);
    if (used) (used.closing ??= []).push(name);
  }

  /**
   * The server answered 26000/42P05 for a named statement: this connection's names are dropped, and
   * after a few such answers the cache is off for good (the server does not keep this session's
   * statements: an undetected transaction pooler, say). One may come from our own pipelining (a
   * statement whose Parse failed, with a second use already sent behind it).
   */
  distrust(client: pg.ClientBase): void {
    this.forget(client);
    if (++this.distrusted >= DISTRUST_LIMIT) this.disabled = true;
  }

  private nameOf(text: string): string {
    let name = this.memo.get(text);
    if (name === undefined) {
      name = this.prefix + createHash('sha256').update(text).digest('hex').slice(0, 32);
      if (this.memoLength + text.length > MEMO_TEXT_BUDGET) {
        this.memo.clear();
        this.memoLength = 0;
      }
      this.memo.set(text, name);
      this.memoLength += text.length;
    }
    return name;
  }

  // pg remembers which names it parsed (or sent a Parse for) on a connection and skips their Parse.
  private forgetParsed(client: pg.ClientBase, name: string): void {
    const { connection } = client as unknown as { connection: PgConnectionStatements };
    delete connection.parsedStatements[name];
    if (connection.submittedNamedStatements) delete connection.submittedNamedStatements[name];
  }
}

/** A server answer that means the statement never ran and a named one may be retried unnamed or re-prepared. */
export function statementCacheFailure(error: unknown): 'untrusted' | 'stale' | undefined {
  const code = (error as { code?: unknown } | undefined)?.code;
  if (code === '26000' || code === '42P05') return 'untrusted';
  // "cached plan must not change result type": a table's columns changed under a prepared statement.
  if (code === '0A000' && /cached plan/.test((error as Error).message)) return 'stale';
  return undefined;
}
