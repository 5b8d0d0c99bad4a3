import { SESSION_LOCK, hasSessionSetConfig, leadingWords } from '../pooler/session-statements.js';

/** What the module needs to know of a statement before it runs, read from its text once. */
export interface StatementFacts {
  /** BEGIN, COMMIT, ROLLBACK (not ROLLBACK TO), END, ABORT, START TRANSACTION, PREPARE TRANSACTION … */
  transactionControl: boolean;
  /**
   * Safe to share a connection with other callers' statements (pipelining): a plain read or write
   * that cannot leave anything on the session. False for everything else, whatever it is.
   */
  shareable: boolean;
  /**
   * The text itself shows session state even though the command tag will look plain: SELECT … INTO,
   * CREATE TABLE … AS (tag SELECT), a session-level set_config() or advisory lock.
   */
  sessionText: boolean;
  /** INSERT, UPDATE, DELETE, MERGE, or a WITH holding one: its RETURNING rows are not capped (see runStatement). */
  write: boolean;
  /**
   * Shareable and not a write by its text (SELECT, VALUES, TABLE, SHOW, a WITH of reads): what shares
   * a busy connection by default (pipelining `reads`). A function the text calls may still write.
   */
  read: boolean;
}

// Leading words of statements that read or write rows and nothing else (with sessionText false).
const PLAIN_LEADERS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'WITH', 'VALUES', 'TABLE', 'SHOW']);
// Also without session effects of their own, but about a cursor or a transaction: never shared with other callers.
const UNSHARED_LEADERS = new Set(['FETCH', 'MOVE', 'SAVEPOINT', 'RELEASE']);
const WRITE_LEADERS = new Set(['INSERT', 'UPDATE', 'DELETE', 'MERGE']);
const TRANSACTION_LEADERS = new Set(['BEGIN', 'START', 'COMMIT', 'END', 'ABORT', 'ROLLBACK']);

// pg's result.command is the tag's first word. Only these tags are trusted to say "no session state"
// (and only with sessionText false: CREATE TABLE … AS and SELECT … INTO report SELECT).
const PLAIN_TAGS = new Set(['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'MERGE', 'FETCH', 'MOVE', 'SHOW', 'COPY', 'SAVEPOINT', 'RELEASE']);

// SELECT … INTO creates a table (a temporary one with INTO TEMP); INSERT INTO and MERGE INTO do not.
const SELECT_INTO = /(?<!\b(?:INSERT|MERGE)\s+)\bINTO\b/i;
const DATA_MODIFYING = /\b(?:INSERT|UPDATE|DELETE|MERGE)\b/i;

// Verdicts of the texts seen (the same few statements repeat); cleared when full.
const FACTS_MAX = 2_000;
const FACTS_TEXT_MAX = 16_384;
const known = new Map<string, StatementFacts>();

/** The facts of one statement text; remembered for the texts that repeat. */
export function statementFacts(text: string): StatementFacts {
  let facts = known.get(text);
  if (facts === undefined) {
    facts = readFacts(text);
    if (text.length <= FACTS_TEXT_MAX) {
      if (known.size >= FACTS_MAX) known.clear();
      known.set(text, facts);
    }
  }
  return facts;
}

/**
 * True when the statement that produced `command` may have left state on its connection that the
 * next caller must not inherit: any command that is not a plain read or write (SET, RESET, DISCARD,
 * CREATE, DECLARE, PREPARE, LISTEN, LOAD, DO, CALL, EXPLAIN …), or a plain one whose text shows it
 * (SELECT … INTO TEMP, CREATE TEMP TABLE … AS, a session set_config() or advisory lock). A sure
 * rule rather than a list of what is known to leak: a false alarm costs one DISCARD ALL, a miss
 * hands one caller's temporary table, cursor or role to the next. Not seen: state a function
 * changes in its body (use withConnection, which always resets).
 */
export function changesSession(text: string, command: string): boolean {
  return !PLAIN_TAGS.has(command) || statementFacts(text).sessionText;
}

function readFacts(text: string): StatementFacts {
  const [first, second, third] = leadingWords(text, 3);
  // ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name stays inside the transaction.
  const rollbackTo = first === 'ROLLBACK' && (second === 'TO' || ((second === 'WORK' || second === 'TRANSACTION') && third === 'TO'));
  const transactionControl = (TRANSACTION_LEADERS.has(first) && !rollbackTo) || (first === 'PREPARE' && second === 'TRANSACTION');
  const sessionText =
    !(PLAIN_LEADERS.has(first) || UNSHARED_LEADERS.has(first)) ||
    ((first === 'SELECT' || first === 'WITH') && SELECT_INTO.test(text)) ||
    SESSION_LOCK.test(text) ||
    hasSessionSetConfig(text);
  const shareable = PLAIN_LEADERS.has(first) && !sessionText;
  const write = WRITE_LEADERS.has(first) || (first === 'WITH' && DATA_MODIFYING.test(text));
  return { transactionControl, shareable, sessionText, write, read: shareable && !write };
}
