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

/**
 * Why a statement cannot go through a transaction pooler, or undefined when it can. Each of these
 * leaves state on the server connection, which the pooler hands to other clients after this
 * transaction (and gives this client another one next time): a session SET would change their
 * settings, LISTEN would deliver notifications to whoever holds the connection, a prepared statement
 * or WITH HOLD cursor would be missing on the next connection. Functions with the same effect
 * (set_config(…, false), pg_advisory_lock) are not seen here: use their transaction-scoped forms
 * (set_config(…, true), pg_advisory_xact_lock).
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
      if (!temporary || /\bON\s+COMMIT\s+DROP\b/i.test(text)) return undefined;
      return `a temporary table lives in a server session, which a transaction pooler does not keep for this client: add ON COMMIT DROP and use it inside transaction(), or ${DIRECT}`;
    }
    default:
      return undefined;
  }
}

/** Throws SessionUnavailableError for a statement that would leave state on a pooled server connection. */
export function refuseSessionStatement(text: string): void {
  const reason = sessionStatementReason(text);
  if (reason) throw new SessionUnavailableError(reason);
}
