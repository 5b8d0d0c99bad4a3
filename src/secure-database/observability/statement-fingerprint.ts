import { createHash } from 'node:crypto';

/** A statement reduced to its shape, and the hash that names it. */
export interface StatementShape {
  /**
   * The text with comments dropped, whitespace collapsed, unquoted words lower-cased, and every literal
   * (strings, dollar-quoted strings, numbers) and every `$n` placeholder replaced by `?`; runs of `?`
   * (an IN list, a multi-row VALUES) collapse to one. Never holds a bound value, nor a literal.
   */
  normalized: string;
  /** The first 16 hex digits of SHA-256 of `normalized`: equal for texts that differ only in whitespace, case of keywords, literals or list lengths. */
  fingerprint: string;
}

// Text → shape memo; distinct statements of an app are few, texts built with literals are not: bounded.
const MEMO_TEXT_BUDGET = 4 * 1024 * 1024;
const memo = new Map<string, StatementShape>();
let memoLength = 0;

/** The statement's shape and fingerprint (memoised per text). */
export function statementShape(text: string): StatementShape {
  let shape = memo.get(text);
  if (shape === undefined) {
    const normalized = normalizeStatement(text);
    shape = { normalized, fingerprint: createHash('sha256').update(normalized).digest('hex').slice(0, 16) };
    if (memoLength + text.length > MEMO_TEXT_BUDGET) {
      memo.clear();
      memoLength = 0;
    }
    memo.set(text, shape);
    memoLength += text.length;
  }
  return shape;
}

const isWordStart = (c: string) => /[A-Za-z_\u0080-\uffff]/.test(c);
const isWordPart = (c: string) => /[A-Za-z0-9_$\u0080-\uffff]/.test(c);
const isDigit = (c: string) => c >= '0' && c <= '9';
const OPERATOR_CHARS = '+-*/<>=~!@#%^&|`?:';

/**
 * A lexical normalisation in the spirit of pg_stat_statements' query jumbling, without a parser: it
 * only has to be stable (same shape, same fingerprint) and never keep a value. Tokens are joined by
 * one space, so `a=1` and `a = 2` give the same text.
 */
export function normalizeStatement(text: string): string {
  const tokens: string[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    if (c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\f') {
      i++;
    } else if (c === '-' && text[i + 1] === '-') {
      while (i < n && text[i] !== '\n') i++;
    } else if (c === '/' && text[i + 1] === '*') {
      // Block comments nest in PostgreSQL.
      let depth = 0;
      do {
        if (text[i] === '/' && text[i + 1] === '*') (depth++, (i += 2));
        else if (text[i] === '*' && text[i + 1] === '/') (depth--, (i += 2));
        else i++;
      } while (i < n && depth > 0);
    } else if (c === "'") {
      i = skipQuoted(text, i, "'", false);
      tokens.push('?');
    } else if (c === '"') {
      const end = skipQuoted(text, i, '"', false);
      tokens.push(text.slice(i, end)); // a quoted identifier is case-sensitive: kept as written
      i = end;
    } else if (c === '$' && isDigit(text[i + 1] ?? '')) {
      i++;
      while (i < n && isDigit(text[i])) i++;
      tokens.push('?');
    } else if (c === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(text.slice(i, i + 65));
      if (tag) {
        const close = text.indexOf(tag[0], i + tag[0].length);
        i = close === -1 ? n : close + tag[0].length;
        tokens.push('?');
      } else {
        tokens.push('$');
        i++;
      }
    } else if (isDigit(c) || (c === '.' && isDigit(text[i + 1] ?? ''))) {
      const number = /^(?:0[xXoObB][0-9A-Fa-f_]+|(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][+-]?\d+)?)/.exec(text.slice(i, i + 400));
      i += number ? Math.max(1, number[0].length) : 1;
      tokens.push('?');
    } else if (isWordStart(c)) {
      let end = i + 1;
      while (end < n && isWordPart(text[end])) end++;
      const word = text.slice(i, end).toLowerCase();
      // E'…', B'…', X'…', N'…', U&'…': a prefixed string literal.
      if (text[end] === "'" && /^(?:e|b|x|n)$/.test(word)) {
        i = skipQuoted(text, end, "'", word === 'e');
        tokens.push('?');
      } else if (word === 'u' && text[end] === '&' && (text[end + 1] === "'" || text[end + 1] === '"')) {
        const end2 = skipQuoted(text, end + 1, text[end + 1], false);
        tokens.push(text[end + 1] === "'" ? '?' : text.slice(i, end2));
        i = end2;
      } else {
        tokens.push(word);
        i = end;
      }
    } else if (OPERATOR_CHARS.includes(c)) {
      let end = i + 1;
      while (end < n && OPERATOR_CHARS.includes(text[end]) && !(text[end] === '-' && text[end + 1] === '-') && !(text[end] === '/' && text[end + 1] === '*')) end++;
      tokens.push(text.slice(i, end));
      i = end;
    } else {
      tokens.push(c);
      i++;
    }
  }
  while (tokens.at(-1) === ';') tokens.pop();
  return collapseLists(tokens.join(' '));
}

/** The index just past the closing quote (a doubled quote is part of the text; with backslashes, `\'` too). */
function skipQuoted(text: string, start: number, quote: string, backslashes: boolean): number {
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (backslashes && c === '\\') i += 2;
    else if (c === quote && text[i + 1] === quote) i += 2;
    else if (c === quote) return i + 1;
    else i++;
  }
  return text.length;
}

/** `? , ? , ?` → `?`, then `( ? ) , ( ? )` → `( ? )`: a list's length is not part of its shape. */
function collapseLists(normalized: string): string {
  return normalized.replace(/\?(?: , \?)+/g, '?').replace(/\( \? \)(?: , \( \? \))+/g, '( ? )');
}
