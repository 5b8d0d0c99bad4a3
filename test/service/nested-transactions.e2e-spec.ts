import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { InvalidQueryError, type ScopedConnection, UniqueViolationError } from '../../src/index.js';
import { type ServiceFixture, checkedOut } from './service-fixture.js';
import { directTarget, transactionPoolerTarget } from './transaction-targets.js';

class Abandon extends Error {}

describe.each([directTarget(), transactionPoolerTarget()])('nested transactions (tx.transaction), $name', (target) => {
  let f: ServiceFixture;

  beforeAll(async () => {
    await target.setUp();
    f = await target.start();
    await f.db.execute('CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY)');
  }, 600_000); // a fresh machine installs pgbouncer first

  beforeEach(async () => {
    await f.db.execute('TRUNCATE items');
  });

  afterAll(async () => {
    await f?.close();
    await target.tearDown();
  });

  const ids = async () => (await f.db.fetch<{ id: number }>('SELECT id FROM items ORDER BY id')).map((r) => r.id);
  const insert = (q: ScopedConnection, id: number) => q.execute('INSERT INTO items VALUES ($1)', [id]);

  it('runs where the section says, and every level of nesting is on the one server connection', async () => {
    expect(f.databasePool.transactionPooled).toBe(target.name.includes('PgBouncer'));
    const pids = await f.db.transaction(async (tx) => {
      const outer = await tx.fetchval<number>('SELECT pg_backend_pid()');
      const [nested, deeper] = await tx.transaction(async (inner) => [
        await inner.fetchval<number>('SELECT pg_backend_pid()'),
        await inner.transaction((innermost) => innermost.fetchval<number>('SELECT pg_backend_pid()')),
      ]);
      return [outer, nested, deeper, await tx.fetchval<number>('SELECT pg_backend_pid()')];
    });
    expect(new Set(pids).size).toBe(1);
  });

  it('a nested transaction that throws is rolled back to its savepoint: its rows are gone, its error propagates, the outer commits the rest', async () => {
    const thrown = new Abandon('inner');
    let seenInside: number[] = [];
    await f.db.transaction(async (tx) => {
      await insert(tx, 1);
      const error = await tx
        .transaction(async (inner) => {
          await insert(inner, 2);
          throw thrown;
        })
        .catch((e: unknown) => e);
      expect(error).toBe(thrown);
      await insert(tx, 3);
      seenInside = (await tx.fetch<{ id: number }>('SELECT id FROM items ORDER BY id')).map((r) => r.id);
    });
    expect(seenInside).toEqual([1, 3]);
    expect(await ids()).toEqual([1, 3]);
    expect(checkedOut(f.db)).toBe(0);
  });

  it('a nested transaction that resolves is released into the outer one: committed with it, rolled back with it', async () => {
    const result = await f.db.transaction(async (tx) => {
      await insert(tx, 1);
      return tx.transaction(async (inner) => {
        await insert(inner, 2);
        return inner.fetchval<number>('SELECT count(*)::int FROM items');
      });
    });
    expect(result).toBe(2);
    expect(await ids()).toEqual([1, 2]);

    await f.db.execute('TRUNCATE items');
    const thrown = new Abandon('outer');
    await expect(
      f.db.transaction(async (tx) => {
        await insert(tx, 1);
        await tx.transaction((inner) => insert(inner, 2));
        throw thrown;
      }),
    ).rejects.toBe(thrown);
    expect(await ids()).toEqual([]);
  });

  it('a statement error inside the nested transaction propagates as itself; the outer transaction stays usable and commits', async () => {
    await f.db.transaction(async (tx) => {
      await insert(tx, 1);
      const error = await tx.transaction((inner) => insert(inner, 1)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UniqueViolationError);
      await insert(tx, 2); // would be 25P02 (transaction aborted) without the ROLLBACK TO SAVEPOINT
    });
    expect(await ids()).toEqual([1, 2]);
  });

  it('a statement error the nested callback swallowed fails the nested transaction (as COMMIT would), not the outer one', async () => {
    await f.db.transaction(async (tx) => {
      await insert(tx, 1);
      const error = await tx
        .transaction(async (inner) => {
          await insert(inner, 2);
          await insert(inner, 1).catch(() => undefined);
          return 'swallowed';
        })
        .catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UniqueViolationError);
      await insert(tx, 3);
    });
    expect(await ids()).toEqual([1, 3]);
  });

  it('nests deeper: a middle level that throws takes its inner levels with it, and the levels stay independent', async () => {
    await f.db.transaction(async (tx) => {
      await insert(tx, 1);
      await tx
        .transaction(async (middle) => {
          await insert(middle, 2);
          await middle.transaction((inner) => insert(inner, 3));
          await middle.transaction(async (inner) => {
            await insert(inner, 4);
            throw new Abandon('innermost');
          }).catch(() => undefined);
          throw new Abandon('middle');
        })
        .catch(() => undefined);
      await tx.transaction((again) => insert(again, 5));
    });
    expect(await ids()).toEqual([1, 5]);
  });

  it('the nested handle works only while its callback runs; the outer handle refuses statements while a nested transaction is open', async () => {
    let kept!: ScopedConnection;
    await f.db.transaction(async (tx) => {
      await tx.transaction(async (inner) => {
        kept = inner;
        const outerWhileOpen = await insert(tx, 9).catch((e: unknown) => e);
        expect(outerWhileOpen).toBeInstanceOf(InvalidQueryError);
        expect((outerWhileOpen as Error).message).toMatch(/nested transaction is open/);
        const sibling = await tx.transaction(async () => 1).catch((e: unknown) => e);
        expect(sibling).toBeInstanceOf(InvalidQueryError);
        await insert(inner, 1);
      });
      const late = await insert(kept, 2).catch((e: unknown) => e);
      expect(late).toBeInstanceOf(InvalidQueryError);
      expect((late as Error).message).toMatch(/used after its transaction or withConnection callback ended/);
      await insert(tx, 3); // usable again once the nested transaction ended
    });
    expect(await ids()).toEqual([1, 3]);
  });

  it('two nested transactions started at once on one handle: the second is refused, the first is unaffected', async () => {
    await f.db.transaction(async (tx) => {
      const [first, second] = await Promise.allSettled([tx.transaction((a) => insert(a, 1)), tx.transaction((b) => insert(b, 2))]);
      expect(first.status).toBe('fulfilled');
      expect(second).toMatchObject({ status: 'rejected', reason: expect.any(InvalidQueryError) });
    });
    expect(await ids()).toEqual([1]);
  });

  it('refuses options a savepoint cannot honour, accepts the outermost\'s own, ignores retries', async () => {
    await f.db.transaction(
      async (tx) => {
        for (const options of [{ isolationLevel: 'serializable' as const }, { readOnly: true }, { isolationLevel: 'read committed' as const }]) {
          const error = await tx.transaction(async () => 1, options).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(InvalidQueryError);
          expect((error as Error).message).toMatch(/savepoint, which cannot change/);
        }
        await expect(tx.transaction(async () => 1, { retries: -1 })).rejects.toBeInstanceOf(InvalidQueryError);
        expect(
          await tx.transaction((inner) => inner.fetchval("SELECT current_setting('transaction_isolation')"), {
            isolationLevel: 'repeatable read',
            readOnly: false,
            retries: 7,
          }),
        ).toBe('repeatable read');
        await insert(tx, 1);
      },
      { isolationLevel: 'repeatable read' },
    );
    expect(await ids()).toEqual([1]);
  });
});

describe('nested transactions on a withConnection handle', () => {
  it('are refused: a withConnection handle has no module transaction to nest in', async () => {
    const f = await directTarget().start();
    try {
      const error = await f.db.withConnection((c) => c.transaction(async () => 1)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidQueryError);
      expect((error as Error).message).toMatch(/withConnection handle is not in a transaction/);
    } finally {
      await f.close();
    }
  });
});
