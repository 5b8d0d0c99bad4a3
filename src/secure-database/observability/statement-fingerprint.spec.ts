import { describe, expect, it } from '@jest/globals';
import { normalizeStatement, statementShape } from './statement-fingerprint.js';

const fingerprint = (text: string) => statementShape(text).fingerprint;

describe('statement fingerprint', () => {
  it.each([
    ['SELECT id FROM users WHERE id = $1', 'select  id\n  FROM users\twhere id=$1;'],
    ['SELECT id FROM users WHERE id = $1', '/* a /* nested */ comment */ SELECT id FROM users -- trailing\n WHERE id = $1'],
    ["SELECT * FROM t WHERE name = 'alice' AND n > 5", "SELECT * FROM t WHERE name = 'o''brien' AND n > 123.5e3"],
    ["SELECT E'a\\'b', $$x$$, $tag$ y $tag$", "SELECT E'zz', $$other$$, $tag$ z $tag$"],
    ['SELECT * FROM t WHERE id IN ($1, $2, $3)', 'SELECT * FROM t WHERE id IN ($1)'],
    ['INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)', 'INSERT INTO t (a, b) VALUES ($1, $2)'],
  ])('%j and %j share one fingerprint', (a, b) => {
    expect(fingerprint(a)).toBe(fingerprint(b));
    expect(fingerprint(a)).toMatch(/^[0-9a-f]{16}$/);
  });

  it.each([
    ['SELECT id FROM users', 'SELECT id FROM accounts'],
    ['SELECT "Id" FROM t', 'SELECT "id" FROM t'],
    ['SELECT a FROM t WHERE a < $1', 'SELECT a FROM t WHERE a <= $1'],
  ])('%j and %j differ', (a, b) => {
    expect(fingerprint(a)).not.toBe(fingerprint(b));
  });

  it('keeps no literal: strings, numbers and dollar-quoted text all become ?', () => {
    const normalized = normalizeStatement("SELECT 'secret-marker', 4242, $q$hidden$q$, x'ff', E'esc\\'aped' FROM t WHERE a = $7");
    expect(normalized).toBe('select ? from t where a = ?'); // five literals in a row collapse like a list
    expect(normalized).not.toMatch(/secret|4242|hidden|ff|esc/);
  });
});
