import type pg from 'pg';

// Distinct statement texts this process names at most; texts past it run unnamed (a process that
// builds SQL text with values in it would otherwise grow this map for ever).
const MAX_NAMED_TEXTS = 10_000;

// 26000/42P05 answers after which the cache is switched off.
const DISTRUST_LIMIT = 3;

interface PgConnectionStatements {
  parsedStatements: Record<string, string>;
}

/** What a statement is sent under on one connection. */
export interface StatementName {
  name: string;
  /** A statement to close first (the connection's least recently used one), to stay within the capacity. */
  evict?: string;
}

/**
 * Named prepared statements per connection, so the server parses and plans each distinct statement
 * once per connection and later executions send only Bind and Execute. Names come from the text
 * (one per distinct text in the process, never reused for another); each connection keeps at most
 * `capacity`, least recently used closed first (Close rides in the next statement's write). Off when
 * capacity is 0 (behind a transaction pooler), and switched off when the server shows it cannot be
 * trusted (see distrust).
 */
export class StatementCache {
  private readonly names = new Map<string, string>();
  private readonly perConnection = new WeakMap<pg.ClientBase, Map<string, true>>();
  private disabled: boolean;
  private distrusted = 0;

  constructor(private readonly capacity: number) {
    this.disabled = capacity === 0;
  }

  get enabled(): boolean {
    return !this.disabled;
  }

  /** The name to send `text` under on `client`, or undefined to send it unnamed. */
  nameFor(client: pg.ClientBase, text: string): StatementName | undefined {
    if (this.disabled) return undefined;
    let name = this.names.get(text);
    if (name === undefined) {
      if (this.names.size >= MAX_NAMED_TEXTS) return undefined;
      name = `nsp_${this.names.size + 1}`;
      this.names.set(text, name);
    }
    let used = this.perConnection.get(client);
    if (!used) this.perConnection.set(client, (used = new Map()));
    used.delete(name);
    used.set(name, true);
    if (used.size <= this.capacity) return { name };
    const evict = used.keys().next().value as string;
    used.delete(evict);
    this.forgetParsed(client, evict);
    return { name, evict };
  }

  /** The connection's statements are gone (DISCARD ALL, DEALLOCATE) or in doubt: parse again next time. */
  forget(client: pg.ClientBase, name?: string): void {
    const used = this.perConnection.get(client);
    if (name === undefined) {
      for (const each of used?.keys() ?? []) this.forgetParsed(client, each);
      this.perConnection.delete(client);
    } else {
      used?.delete(name);
      this.forgetParsed(client, name);
    }
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

  // pg remembers which names it parsed on a connection and skips their Parse.
  private forgetParsed(client: pg.ClientBase, name: string): void {
    delete (client as unknown as { connection: PgConnectionStatements }).connection.parsedStatements[name];
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
