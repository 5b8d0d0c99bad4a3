import { SessionUnavailableError } from '../errors/pooler.errors.js';

const DIRECT = 'use withConnection() with DATABASE_DIRECT_URL (a direct connection to the database)';

/** The statement's first `count` words, upper-cased, past whitespace, `--` comments and (nested) block comments. */
export function leadingWords(text: string, count: number): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < text.length && words.length < count) {
    if (/\s/.test(text[i])) {
      i++;
    } else if (text.startsWith('--', i)) {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end + 1;
    } else if (text.startsWith('/*', i)) {
      let depth = 1;
      for (i += 2; depth > 0 && i < text.length; ) {
        if (text.startsWith('/*', i)) {
          depth++;
          i += 2;
        } else if (text.startsWith('*/', i)) {
          depth--;
          i += 2;
        } else {
          i++;
        }
      }
    } else {
      const word = /^[A-Za-z_]+/.exec(text.slice(i))?.[0];
      if (!word) break; // a parenthesis, a quote, a number: not a keyword we look for
      words.push(word.toUpperCase());
      i += word.length;
    }
  }
  return words;
}

// SELECT … INTO TEMP / INTO pg_temp.x creates a temporary table (INSERT INTO and MERGE INTO do not).
const SELECT_INTO_TEMP = /(?<!\b(?:INSERT|MERGE)\s+)\bINTO\s+(?:(?:(?:GLOBAL|LOCAL)\s+)?(?:TEMP|TEMPORARY)\b|(?:TABLE\s+)?pg_temp\b)/i;
const PG_TEMP = /\bpg_temp\b/i;
/** Session-level advisory locks (the _xact_ forms end with the transaction). */
export const SESSION_LOCK = /\bpg_(?:try_)?advisory_lock(?:_shared)?\s*\(/i;
const SET_CONFIG = /\bset_config\s*\(/gi;

/** A set_config() call whose last argument is not literally `true`: a session-level setting, or one that cannot be told. */
export function hasSessionSetConfig(text: string): boolean {
  for (const match of text.matchAll(SET_CONFIG)) {
    if (lastArgument(text, match.index + match[0].length).toLowerCase() !== 'true') return true;
  }
  return false;
}

// The last top-level argument of the call whose arguments start at `start`, trimmed ('' when unclosed).
function lastArgument(text: string, start: number): string {
  let depth = 0;
  let from = start;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === "'" || c === '"') {
      const end = text.indexOf(c, i + 1);
      if (end === -1) return '';
      i = end;
    } else if (c === '(') depth++;
    else if (c === ',' && depth === 0) from = i + 1;
    else if (c === ')') {
      if (depth === 0) return text.slice(from, i).trim();
      depth--;
    }
  }
  return '';
}

const TEMPORARY = `a temporary object lives in a server session, which a transaction pooler does not keep for this client (and hands to other clients)`;

/**
 * Why a statement cannot go through a transaction pooler, or undefined when it can. Each of these
 * leaves state on the server connection, which the pooler hands to other clients after this
 * transaction (and gives this client another one next time): a session SET would change their
 * settings, LISTEN would deliver notifications to whoever holds the connection, a temporary table
 * would shadow a real one for them, a prepared statement or WITH HOLD cursor would be missing on
 * the next connection. Session-level set_config() and advisory locks are refused too; use their
 * transaction-scoped forms (set_config(…, true), pg_advisory_xact_lock). A function that changes the
 * session in its body is not seen here.
 */
export function sessionStatementReason(text: string): string | undefined {
  const [first, second, third] = leadingWords(text, 3);
  switch (first) {
    case 'SET':
      // SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the transaction.
      if (second === 'LOCAL' || second === 'TRANSACTION' || second === 'CONSTRAINTS') return undefined;
      return `SET changes the server session, which a transaction pooler shares with other clients: use SET LOCAL inside transaction(), or ${DIRECT}`;
    case 'RESET':
    case 'DISCARD':
      return `${first} changes the server session, which a transaction pooler shares with other clients: ${DIRECT}`;
    case 'LISTEN':
    case 'UNLISTEN':
      return `${first} needs a server session of its own, which a transaction pooler does not give (notifications would reach whichever client holds the connection): ${DIRECT}`;
    case 'PREPARE':
    case 'DEALLOCATE':
      return `prepared statements live in a server session, which a transaction pooler does not keep for this client: send the statement with parameters (every query here does), or ${DIRECT}`;
    case 'LOAD':
      return `LOAD changes the server session, which a transaction pooler shares with other clients: ${DIRECT}`;
    case 'DECLARE':
      return /\bWITH\s+HOLD\b/i.test(text) ? `a WITH HOLD cursor outlives its transaction, and a transaction pooler does not keep the session: use stream(), or ${DIRECT}` : undefined;
    case 'CREATE': {
      const temporary = ['TEMP', 'TEMPORARY'].includes(second) || (['LOCAL', 'GLOBAL'].includes(second) && ['TEMP', 'TEMPORARY'].includes(third));
      if (!temporary && !PG_TEMP.test(text)) break;
      if (/\bON\s+COMMIT\s+DROP\b/i.test(text)) break;
      return `${TEMPORARY}: for a table add ON COMMIT DROP and use it inside transaction(), or ${DIRECT}`;
    }
    case 'SELECT':
    case 'WITH':
      if (SELECT_INTO_TEMP.test(text)) return `${TEMPORARY}: ${DIRECT}`;
      break;
  }
  if (SESSION_LOCK.test(text)) {
    return `a session-level advisory lock stays on the server connection, which a transaction pooler hands to other clients: use pg_advisory_xact_lock inside transaction(), or ${DIRECT}`;
  }
  if (hasSessionSetConfig(text)) {
    return `set_config(…, false) changes the server session, which a transaction pooler shares with other clients: pass true as its last argument (the setting then ends with the transaction), or ${DIRECT}`;
  }
  return undefined;
}

// Verdicts of the texts seen (the same few statements repeat behind a pooler too); cleared when full.
const REASONS_MAX = 2_000;
const reasons = new Map<string, string | null>();

/** Throws SessionUnavailableError for a statement that would leave state on a pooled server connection. */
export function refuseSessionStatement(text: string): void {
  let reason = reasons.get(text);
  if (reason === undefined) {
    reason = sessionStatementReason(text) ?? null;
    if (reasons.size >= REASONS_MAX) reasons.clear();
    reasons.set(text, reason);
  }
  if (reason) throw new SessionUnavailableError(reason);
}
