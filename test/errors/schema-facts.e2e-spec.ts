import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { InFailedTransactionError, NotNullViolationError, ForeignKeyViolationError, UniqueViolationError } from '../../src/index.js';
import { type ServiceFixture, startService } from '../service/service-fixture.js';

// Issue #23: an app decides what to answer from which constraint failed; that must not depend on
// APP_ENV, and the names must not ride along into whatever serializes the error.
describe.each(['production', 'development'])('schema facts on errors (%s)', (appEnv) => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ appEnv });
    await f.db.execute(`
      CREATE TABLE authors (
        id int PRIMARY KEY,
        email text NOT NULL CONSTRAINT authors_email_key UNIQUE,
        username text NOT NULL CONSTRAINT authors_username_key UNIQUE
      )`);
    await f.db.execute('CREATE TABLE articles (id int PRIMARY KEY, author_id int CONSTRAINT articles_author_fk REFERENCES authors (id))');
    await f.db.execute("INSERT INTO authors VALUES (1, 'ada@example.com', 'ada')");
  });

  afterAll(async () => {
    await f?.close();
  });

  it('a unique violation names its constraint, table and schema as properties', async () => {
    const byEmail = await f.db.execute('INSERT INTO authors VALUES (2, $1, $2)', ['ada@example.com', 'other']).catch((e: unknown) => e);
    const byName = await f.db.execute('INSERT INTO authors VALUES (3, $1, $2)', ['new@example.com', 'ada']).catch((e: unknown) => e);
    expect(byEmail).toBeInstanceOf(UniqueViolationError);
    expect(byEmail).toMatchObject({ constraint: 'authors_email_key', table: 'authors', schema: 'public' });
    expect(byName).toMatchObject({ constraint: 'authors_username_key', table: 'authors', schema: 'public' });
  });

  it('a not-null violation names its column; a foreign key violation its constraint', async () => {
    const notNull = await f.db.execute('INSERT INTO authors VALUES (4, NULL, $1)', ['bob']).catch((e: unknown) => e);
    expect(notNull).toBeInstanceOf(NotNullViolationError);
    expect(notNull).toMatchObject({ column: 'email', table: 'authors', schema: 'public' });
    const orphan = await f.db.execute('INSERT INTO articles VALUES (1, $1)', [424242]).catch((e: unknown) => e);
    expect(orphan).toBeInstanceOf(ForeignKeyViolationError);
    expect(orphan).toMatchObject({ constraint: 'articles_author_fk', table: 'articles' });
  });

  it('serializing the error (JSON, util.inspect, own keys) carries neither the names nor the values', async () => {
    const error = (await f.db.execute('INSERT INTO authors VALUES (5, $1, $2)', ['ada@example.com', 'zed']).catch((e: unknown) => e)) as UniqueViolationError;
    expect(error.constraint).toBe('authors_email_key');
    const serialized = [JSON.stringify(error), Object.keys(error).join(','), ...(appEnv === 'production' ? [inspect(error, { depth: 5 }), error.message, JSON.stringify(error.cause)] : [])];
    for (const text of serialized) {
      expect(text).not.toMatch(/authors|ada@example\.com|zed/);
    }
  });

  it('25P02 says why the statement was ignored and what to do instead', async () => {
    const error = await f.db
      .transaction(async (tx) => {
        await tx.execute('INSERT INTO authors VALUES (6, $1, $2)', ['ada@example.com', 'dup']).catch(() => undefined);
        await tx.fetch('SELECT 1');
      })
      .catch((e: unknown) => e);
    // The transaction rethrows what fn threw: the ignored SELECT's error.
    expect(error).toBeInstanceOf(InFailedTransactionError);
    expect(error).toMatchObject({ code: 'DB_IN_FAILED_TRANSACTION', sqlstate: '25P02' });
    expect((error as Error).message).toMatch(
      /^an earlier statement in this transaction failed; later statements are ignored until it ends: use a nested transaction \(savepoint\) to continue after an error \(SQLSTATE 25P02\)/,
    );
  });
});
