import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import * as v from 'valibot';
import { z } from 'zod';
import { InvalidQueryError, RowValidationError, sql } from '../../src/index.js';
import { type ServiceFixture, checkedOut, startService } from './service-fixture.js';

const User = z.object({ id: z.number().int(), email: z.email(), visits: z.coerce.number() });

/**
 * `{ schema }`: every row validated by a Standard Schema validator (zod and valibot here), the
 * result typed and shaped by the schema's output, a row that does not match a RowValidationError
 * that never carries a value in production.
 */
describe.each([
  ['production', 'production'],
  ['development', 'development'],
])('row schemas (%s)', (_, appEnv) => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ appEnv, poolMax: 1 });
    await f.db.execute('CREATE TABLE members (id int PRIMARY KEY, email text, visits bigint NOT NULL)');
    await f.db.execute("INSERT INTO members VALUES (1, 'ann@example.com', 3), (2, 'bob@example.com', 9000000000), (3, 'secret-value-not-an-email', 1)");
  });
  afterAll(() => f?.close());

  it('validates and types every row of fetch and query (zod): int8 coerced by the schema', async () => {
    const rows = await f.db.fetch(sql`SELECT id, email, visits FROM members WHERE id < 3 ORDER BY id`, { schema: User });
    const typed: Array<{ id: number; email: string; visits: number }> = rows; // compile-time: the schema's output type
    expect(typed).toEqual([
      { id: 1, email: 'ann@example.com', visits: 3 },
      { id: 2, email: 'bob@example.com', visits: 9_000_000_000 },
    ]);
    const result = await f.db.query('SELECT id, email, visits FROM members WHERE id = $1', [1], { schema: User });
    expect(result.rows[0].visits).toBe(3);
  });

  it('fetchrow and fetchMaybeRow take a schema too (valibot)', async () => {
    const Member = v.object({ id: v.number(), email: v.pipe(v.string(), v.email()) });
    const row = await f.db.fetchrow(sql`SELECT id, email FROM members WHERE id = ${2}`, { schema: Member });
    expect(row.email).toBe('bob@example.com');
    expect(await f.db.fetchMaybeRow('SELECT id, email FROM members WHERE id = $1', [99], { schema: Member })).toBeNull();
    await expect(f.db.fetchrow(sql`SELECT id, email FROM members WHERE id = ${3}`, { schema: Member })).rejects.toBeInstanceOf(RowValidationError);
  });

  it('a row that does not match: RowValidationError naming the row, no value in production', async () => {
    const error = (await f.db.fetch(sql`SELECT id, email, visits FROM members ORDER BY id`, { schema: User }).catch((e: unknown) => e)) as RowValidationError;
    expect(error).toBeInstanceOf(RowValidationError);
    expect(error).toMatchObject({ code: 'DB_ROW_INVALID', rowIndex: 2, issueCount: 1, retryable: false });
    expect(error.message).not.toContain('secret-value-not-an-email');
    if (appEnv === 'production') expect(error.message).toBe('Row 2 of the result did not match the schema (1 issue)');
    else expect(error.message).toMatch(/^Row 2 of the result did not match the schema \(1 issue\): email: /);
  });

  it('streams validate each row as it is read; a bad row ends the stream and frees the connection', async () => {
    const seen: number[] = [];
    const stream = f.db.stream(sql`SELECT id, email, visits FROM members ORDER BY id`, { schema: User, batchSize: 1 });
    await expect(
      (async () => {
        for await (const member of stream) seen.push(member.visits);
      })(),
    ).rejects.toBeInstanceOf(RowValidationError);
    expect(seen).toEqual([3, 9_000_000_000]);
    expect(checkedOut(f.db)).toBe(0);
    expect(await f.db.fetchval('SELECT 1')).toBe(1);
  });

  it('async validators work (valibot pipeAsync)', async () => {
    const Checked = v.objectAsync({ id: v.pipeAsync(v.number(), v.checkAsync(async (id) => id > 0, 'positive')) });
    expect(await f.db.fetch('SELECT id FROM members ORDER BY id', undefined, { schema: Checked })).toEqual([{ id: 1 }, { id: 2 }, { id: 3 }]);
  });

  it('something that is not a Standard Schema validator is refused before anything is sent', async () => {
    await expect(f.db.fetch('SELECT 1', [], { schema: { parse: () => 1 } as never })).rejects.toBeInstanceOf(InvalidQueryError);
    expect(() => f.db.stream('SELECT 1', [], { schema: {} as never })).toThrow(InvalidQueryError);
  });
});
