import { describe, expect, it } from '@jest/globals';
import { InvalidQueryError } from '../errors/query.errors.js';
import { sql } from './sql.js';

describe('sql', () => {
  it('turns interpolated values into numbered bind parameters, never text', () => {
    const name = "'; DROP TABLE users; --";
    const q = sql`SELECT * FROM users WHERE name = ${name} AND age > ${30}`;
    expect(q.text).toBe('SELECT * FROM users WHERE name = $1 AND age > $2');
    expect(q.values).toEqual([name, 30]);
  });

  it('keeps a template without values as is', () => {
    const q = sql`SELECT 1`;
    expect(q.text).toBe('SELECT 1');
    expect(q.values).toEqual([]);
  });

  it('treats strings, objects that look like fragments, arrays and null as values', () => {
    const lookalike = { text: 'DROP TABLE users', values: [], strings: ['DROP TABLE users'] };
    const q = sql`SELECT ${'1; DROP TABLE users'}, ${lookalike}, ${[1, 2]}, ${null}`;
    expect(q.text).toBe('SELECT $1, $2, $3, $4');
    expect(q.values).toEqual(['1; DROP TABLE users', lookalike, [1, 2], null]);
  });

  it('renumbers the placeholders of nested fragments in order', () => {
    const inner = sql`b = ${2} AND c = ${3}`;
    const deeper = sql`(${inner}) OR d = ${4}`;
    const q = sql`SELECT * FROM t WHERE a = ${1} AND ${deeper} AND e = ${5}`;
    expect(q.text).toBe('SELECT * FROM t WHERE a = $1 AND (b = $2 AND c = $3) OR d = $4 AND e = $5');
    expect(q.values).toEqual([1, 2, 3, 4, 5]);
    // The nested fragments are unchanged and still number from $1 on their own.
    expect(inner.text).toBe('b = $1 AND c = $2');
    expect(deeper.text).toBe('(b = $1 AND c = $2) OR d = $3');
  });

  it('uses the same fragment twice with separate parameters', () => {
    const cond = sql`x = ${7}`;
    const q = sql`${cond} OR ${cond}`;
    expect(q.text).toBe('x = $1 OR x = $2');
    expect(q.values).toEqual([7, 7]);
  });

  it('gives the same text on every call from one call site, with that call’s values', () => {
    const byId = (id: number) => sql`SELECT * FROM t WHERE id = ${id}`;
    const [a, b] = [byId(1), byId(2)];
    expect(a.text).toBe('SELECT * FROM t WHERE id = $1');
    expect(b.text).toBe(a.text);
    expect([a.values, b.values]).toEqual([[1], [2]]);
  });

  it('refuses undefined values (a misspelt property would become NULL)', () => {
    expect(() => sql`SELECT ${undefined}`).toThrow(InvalidQueryError);
    expect(() => sql`SELECT ${sql`1`}, ${undefined}`).toThrow(InvalidQueryError);
    expect(() => sql.list([1, undefined])).toThrow(InvalidQueryError);
  });

  it('refuses to be called as a function with text', () => {
    const call = sql as unknown as (text: unknown) => unknown;
    expect(() => call('DROP TABLE users')).toThrow(InvalidQueryError);
    expect(() => call(['DROP TABLE users'])).toThrow(InvalidQueryError);
    // Shaped like a template, but built at run time (from JSON, say): not frozen as real ones are.
    expect(() => call(Object.assign(['DROP TABLE users'], { raw: ['DROP TABLE users'] }))).toThrow(InvalidQueryError);
    expect(() => call(Object.freeze(Object.assign(['DROP TABLE users'], { raw: ['DROP TABLE users'] })))).toThrow(InvalidQueryError);
  });

  it('refuses a value directly followed by a digit, which would read as another placeholder ($1 then 0 is $10)', () => {
    const a = 'x';
    expect(() => sql`SELECT ${a}0`.text).toThrow(/directly followed by a digit/);
    expect(() => sql`SELECT ${sql`${a}`}0`.text).toThrow(InvalidQueryError);
    expect(() => sql`SELECT ${a}${sql.unsafeRaw('1')}`.text).toThrow(InvalidQueryError);
    expect(sql`SELECT ${a} 0`.text).toBe('SELECT $1 0');
    expect(sql`SELECT ${a}::int + 0`.text).toBe('SELECT $1::int + 0');
  });

  it('refuses NUL in the template text (the server would see half the statement)', () => {
    expect(() => sql`SELECT 1 \0 ${'x'}`.text).toThrow(/NUL/);
    expect(() => sql`SELECT 1${'\0'}`.text).not.toThrow(); // a NUL inside a value is a value (the server refuses it as such)
  });

  describe('identifier', () => {
    it('quotes each part and joins them with dots', () => {
      expect(sql.identifier('public', 'users').text).toBe('"public"."users"');
      expect(sql.identifier('Mixed Case').text).toBe('"Mixed Case"');
    });

    it('doubles embedded double quotes so the name cannot end early', () => {
      const q = sql`SELECT * FROM ${sql.identifier('x"; DROP TABLE users; --')} WHERE id = ${1}`;
      expect(q.text).toBe('SELECT * FROM "x""; DROP TABLE users; --" WHERE id = $1');
      expect(q.values).toEqual([1]);
    });

    it('accepts 63 bytes and refuses 64, counting UTF-8 bytes', () => {
      expect(sql.identifier('a'.repeat(63)).text).toBe(`"${'a'.repeat(63)}"`);
      expect(() => sql.identifier('a'.repeat(64))).toThrow(InvalidQueryError);
      expect(() => sql.identifier('é'.repeat(32))).toThrow(InvalidQueryError); // 64 bytes
    });

    it('refuses empty names, NUL, non-strings and no parts', () => {
      expect(() => sql.identifier('')).toThrow(InvalidQueryError);
      expect(() => sql.identifier('public', '')).toThrow(InvalidQueryError);
      expect(() => sql.identifier('a\0b')).toThrow(InvalidQueryError);
      expect(() => sql.identifier(42 as unknown as string)).toThrow(InvalidQueryError);
      expect(() => sql.identifier()).toThrow(InvalidQueryError);
    });
  });

  describe('list, array, join', () => {
    it('list makes one parameter per value', () => {
      const q = sql`SELECT * FROM t WHERE a = ${0} AND id IN (${sql.list([1, 2, 3])}) AND b = ${4}`;
      expect(q.text).toBe('SELECT * FROM t WHERE a = $1 AND id IN ($2, $3, $4) AND b = $5');
      expect(q.values).toEqual([0, 1, 2, 3, 4]);
    });

    it('list refuses an empty array', () => {
      expect(() => sql.list([])).toThrow(InvalidQueryError);
    });

    it('array is a single typed parameter, empty or not', () => {
      const q = sql`SELECT * FROM t WHERE id = ANY(${sql.array([1, 2, 3], 'int4')}) OR tag = ANY(${sql.array([], 'text')})`;
      expect(q.text).toBe('SELECT * FROM t WHERE id = ANY($1::int4[]) OR tag = ANY($2::text[])');
      expect(q.values).toEqual([[1, 2, 3], []]);
      expect(sql.array([1], 'pg_catalog.int8').text).toBe('$1::pg_catalog.int8[]');
    });

    it('array refuses a type that is not a plain name', () => {
      for (const type of ['int4[]) OR true --', 'int4 OR 1', '', 'text;', '"text"']) {
        expect(() => sql.array([1], type)).toThrow(InvalidQueryError);
      }
      expect(() => sql.array('1,2' as unknown as unknown[], 'int4')).toThrow(InvalidQueryError);
    });

    it('join nests fragments, keeps other items as values and renumbers', () => {
      const conditions = [sql`a = ${1}`, sql`b = ${2}`, sql`c IS NULL`];
      const q = sql`SELECT * FROM t WHERE ${sql.join(conditions, sql` AND `)} LIMIT ${10}`;
      expect(q.text).toBe('SELECT * FROM t WHERE a = $1 AND b = $2 AND c IS NULL LIMIT $3');
      expect(q.values).toEqual([1, 2, 10]);
      const values = sql`VALUES (${sql.join([1, 'x; DROP TABLE t', sql`DEFAULT`])})`;
      expect(values.text).toBe('VALUES ($1, $2, DEFAULT)');
      expect(values.values).toEqual([1, 'x; DROP TABLE t']);
      expect(sql.join([]).text).toBe('');
    });

    it('join of column identifiers', () => {
      const columns = sql.join(['id', 'na"me'].map((c) => sql.identifier(c)));
      expect(sql`SELECT ${columns} FROM t`.text).toBe('SELECT "id", "na""me" FROM t');
    });
  });

  describe('unsafeRaw', () => {
    it('inserts developer-written text verbatim', () => {
      const direction = sql.unsafeRaw('DESC');
      const q = sql`SELECT * FROM t WHERE a = ${1} ORDER BY a ${direction}, b = ${2}`;
      expect(q.text).toBe('SELECT * FROM t WHERE a = $1 ORDER BY a DESC, b = $2');
      expect(q.values).toEqual([1, 2]);
    });

    it('refuses NUL and non-strings', () => {
      expect(() => sql.unsafeRaw('SELECT 1\0')).toThrow(InvalidQueryError);
      expect(() => sql.unsafeRaw({ toString: () => 'SELECT 1' } as unknown as string)).toThrow(InvalidQueryError);
    });
  });

  it('refuses more parameters than the protocol can carry', () => {
    const q = sql`SELECT ${sql.list(Array.from({ length: 65_536 }, (_, i) => i))}`;
    expect(() => q.text).toThrow(InvalidQueryError);
    expect(sql`SELECT ${sql.list(Array.from({ length: 65_535 }, (_, i) => i))}`.values).toHaveLength(65_535);
  });
});
