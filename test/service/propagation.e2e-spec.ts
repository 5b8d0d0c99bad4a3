import { afterAll, beforeAll, beforeEach, describe, expect, it } from '@jest/globals';
import { Inject, Injectable } from '@nestjs/common';
import { DatabaseService, InvalidQueryError, Transactional, getDatabaseServiceToken } from '../../src/index.js';
import { type ServiceFixture, checkedOut, deferred } from './service-fixture.js';
import { type TransactionTarget, directTarget, transactionPoolerTarget } from './transaction-targets.js';

class Abandon extends Error {}

const prepare = (db: DatabaseService) =>
  db.execute('CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY)').then(() => db.execute('CREATE TABLE IF NOT EXISTS counters (id int PRIMARY KEY, n int NOT NULL)'));

/** Repository-style code: it only knows the service, never a transaction handle. */
class ItemRepository {
  constructor(private readonly db: DatabaseService) {}
  add(id: number): Promise<number> {
    return this.db.execute('INSERT INTO items VALUES ($1)', [id]);
  }
  count(): Promise<number> {
    return this.db.fetchval<number>('SELECT count(*)::int FROM items');
  }
}

/** A Nest provider whose methods run in transactions through @Transactional(). */
@Injectable()
class Ledger {
  /** Runs of each method's body, retries included. */
  readonly runs = { record: 0, recordInner: 0, increment: 0, write: 0 };
  /** Lets a test hold `increment` after its read (two calls meet there). */
  afterRead?: () => Promise<void>;

  constructor(@Inject(DatabaseService) private readonly db: DatabaseService) {}

  @Transactional()
  async record(ids: number[], failWith?: Error): Promise<number> {
    this.runs.record++;
    for (const id of ids) await this.db.execute('INSERT INTO items VALUES ($1)', [id]);
    if (failWith) throw failWith;
    return this.db.fetchval<number>('SELECT pg_backend_pid()');
  }

  @Transactional()
  async recordInner(id: number, failWith?: Error): Promise<number> {
    this.runs.recordInner++;
    await this.db.execute('INSERT INTO items VALUES ($1)', [id]);
    if (failWith) throw failWith;
    return this.db.fetchval<number>('SELECT pg_backend_pid()');
  }

  /** An outer method calling a nested one; `innerFails` makes the nested call throw (and this one catch it). */
  @Transactional()
  async recordBoth(outerId: number, innerId: number, options: { innerFails?: boolean; outerFails?: Error } = {}): Promise<number[]> {
    await this.db.execute('INSERT INTO items VALUES ($1)', [outerId]);
    const inner = await this.recordInner(innerId, options.innerFails ? new Abandon('inner') : undefined).catch((e: unknown) => {
      if (!(e instanceof Abandon)) throw e;
      return -1;
    });
    if (options.outerFails) throw options.outerFails;
    return [await this.db.fetchval<number>('SELECT pg_backend_pid()'), inner];
  }

  /** Read, then write what was read plus one: two at once collide under SERIALIZABLE (40001). The write is a nested method. */
  @Transactional({ isolationLevel: 'serializable' })
  async increment(): Promise<void> {
    this.runs.increment++;
    const n = await this.db.fetchval<number>('SELECT n FROM counters WHERE id = 1');
    await this.afterRead?.();
    await this.write(n + 1);
  }

  @Transactional({ isolationLevel: 'serializable', retries: 0 })
  async write(n: number): Promise<void> {
    this.runs.write++;
    await this.db.execute('UPDATE counters SET n = $1 WHERE id = 1', [n]);
  }
}

/** Makes the first `count` callers wait for each other once (each call of the returned function is one arrival). */
function meeting(count: number): () => Promise<void> {
  let arrived = 0;
  const all = deferred();
  return async () => {
    if (arrived >= count) return;
    if (++arrived === count) all.resolve();
    await all.promise;
  };
}

describe.each([directTarget(), transactionPoolerTarget()])('the service inside its own transaction, $name', (target: TransactionTarget) => {
  let f: ServiceFixture;
  let ledger: Ledger;

  beforeAll(async () => {
    await target.setUp();
    f = await target.start({}, [Ledger]);
    ledger = f.moduleRef.get(Ledger);
    await prepare(f.db);
  }, 600_000); // a fresh machine installs pgbouncer first

  beforeEach(async () => {
    await f.db.execute('TRUNCATE items, counters');
    await f.db.execute('INSERT INTO counters VALUES (1, 100)');
    ledger.runs.record = ledger.runs.recordInner = ledger.runs.increment = ledger.runs.write = 0;
    ledger.afterRead = undefined;
  });

  afterAll(async () => {
    await f?.close();
    await target.tearDown();
  });

  const ids = async () => (await f.db.fetch<{ id: number }>('SELECT id FROM items ORDER BY id')).map((r) => r.id);
  /** Rows committed, as another connection sees them (straight to the server). */
  const committedCount = () =>
    f.cluster.withSuperuser(async (admin) => (await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM items')).rows[0].n, f.cluster.facts.database);

  describe('joining', () => {
    it('every helper joins the transaction on its connection: pool size 1, one backend, no second connection, no deadlock', async () => {
      const single = await target.start({ poolMax: 1, acquireTimeoutMs: 2_000 });
      try {
        await prepare(single.db);
        const { db } = single;
        const pid = 'SELECT pg_backend_pid() AS pid';
        const seen = await db.transaction(async (tx) => {
          const own = await tx.fetchval<number>(pid);
          const streamed: number[] = [];
          for await (const row of db.stream<{ pid: number }>(pid)) streamed.push(row.pid);
          return {
            own,
            joined: [
              (await db.query<{ pid: number }>(pid)).rows[0].pid,
              (await db.fetch<{ pid: number }>(pid))[0].pid,
              (await db.fetchrow<{ pid: number }>(pid)).pid,
              (await db.fetchMaybeRow<{ pid: number }>(pid))!.pid,
              await db.fetchval<number>(pid),
              ...streamed,
            ],
            executed: await db.execute('INSERT INTO items VALUES (1), (2)'),
            checkedOut: checkedOut(db),
          };
        });
        expect(seen.joined).toEqual(Array(6).fill(seen.own));
        expect(seen.executed).toBe(2);
        expect(seen.checkedOut).toBe(1);
        expect(await db.fetchval('SELECT count(*)::int FROM items')).toBe(2);
        expect(checkedOut(db)).toBe(0);
      } finally {
        await single.close();
      }
    });

    it('repository code calling the service sees the transaction\'s uncommitted rows, and its writes roll back with it', async () => {
      const repository = new ItemRepository(f.db);
      const thrown = new Abandon('rolled back');
      const seen: number[] = [];
      const error = await f.db
        .transaction(async (tx) => {
          await tx.execute('INSERT INTO items VALUES (1)');
          await repository.add(2);
          seen.push(await repository.count(), await tx.fetchval<number>('SELECT count(*)::int FROM items'), await committedCount());
          throw thrown;
        })
        .catch((e: unknown) => e);
      expect(error).toBe(thrown);
      expect(seen).toEqual([2, 2, 0]);
      expect(await ids()).toEqual([]);

      await f.db.transaction(() => repository.add(3));
      expect(await ids()).toEqual([3]);
    });

    it('db.transaction inside a transaction is a savepoint on the same connection: rolled back alone when it throws', async () => {
      const result = await f.db.transaction(async (tx) => {
        await tx.execute('INSERT INTO items VALUES (1)');
        const outerPid = await f.db.fetchval<number>('SELECT pg_backend_pid()');
        const innerSeen = await f.db
          .transaction(async (inner) => {
            await f.db.execute('INSERT INTO items VALUES (2)');
            const seenInside = [await f.db.fetchval<number>('SELECT pg_backend_pid()'), await inner.fetchval<number>('SELECT count(*)::int FROM items')];
            throw Object.assign(new Abandon('inner'), { seenInside });
          })
          .catch((e: { seenInside: number[] }) => e.seenInside);
        await f.db.execute('INSERT INTO items VALUES (3)');
        return { outerPid, innerSeen };
      });
      expect(result.innerSeen).toEqual([result.outerPid, 2]);
      expect(await ids()).toEqual([1, 3]);
    });

    it('joined calls at once (Promise.all) share the connection safely; a call while a joined stream reads is refused clearly', async () => {
      const counts = await f.db.transaction(async () => {
        await Promise.all([1, 2, 3, 4, 5, 6, 7, 8].map((id) => f.db.execute('INSERT INTO items VALUES ($1)', [id])));
        const together = await Promise.all([f.db.fetchval<number>('SELECT count(*)::int FROM items'), f.db.fetchval<number>('SELECT count(*)::int FROM items WHERE id > 4')]);
        const refused: unknown[] = [];
        for await (const row of f.db.stream<{ g: number }>('SELECT g FROM generate_series(1, 3) g', [], { batchSize: 1 })) {
          refused.push(await f.db.fetchval('SELECT $1::int', [row.g]).catch((e: unknown) => e));
        }
        return { together, refused, after: await f.db.fetchval<number>('SELECT count(*)::int FROM items') };
      });
      expect(counts.together).toEqual([8, 4]);
      expect(counts.refused).toHaveLength(3);
      for (const error of counts.refused) {
        expect(error).toBeInstanceOf(InvalidQueryError);
        expect((error as Error).message).toMatch(/stream is still reading/);
      }
      expect(counts.after).toBe(8);
      expect(await ids()).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    });

    it('withConnection inside a transaction is refused with what to do instead', async () => {
      const error = await f.db.transaction(() => f.db.withConnection(async () => 1)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidQueryError);
      expect((error as Error).message).toMatch(/withConnection was called inside a transaction callback/);
    });

    it('work a callback left running is refused once its transaction (or nested transaction) ended, and writes nothing', async () => {
      // An ended nested transaction inside a running one.
      const errors = await f.db.transaction(async () => {
        const go = deferred();
        let later!: Promise<unknown>;
        await f.db.transaction(async () => {
          later = go.promise.then(() => f.db.execute('INSERT INTO items VALUES (1)'));
        });
        go.resolve();
        return [await later.catch((e: unknown) => e)];
      });
      // An ended outermost transaction, while another transaction runs (async context is tracked then; see README).
      const go = deferred();
      let later!: Promise<unknown>;
      await f.db.transaction(async () => {
        later = go.promise.then(() => f.db.execute('INSERT INTO items VALUES (2)'));
      });
      const running = deferred();
      const release = deferred();
      const other = f.db.transaction(async () => {
        running.resolve();
        await release.promise;
      });
      await running.promise;
      go.resolve();
      errors.push(await later.catch((e: unknown) => e));
      release.resolve();
      await other;
      for (const error of errors) {
        expect(error).toBeInstanceOf(InvalidQueryError);
        expect((error as Error).message).toMatch(/left running after the transaction \(or nested transaction\) ended/);
      }
      expect(await ids()).toEqual([]);
    });

    it('a transaction of one connection is not joined by another connection\'s service, nor hides its own from it', async () => {
      const two = await target.start({}, [], 'second');
      try {
        await prepare(two.db);
        const second = two.moduleRef.get<DatabaseService>(getDatabaseServiceToken('second'));
        const thrown = new Abandon('first rolls back');
        let seen: number[] = [];
        const error = await two.db
          .transaction(async (tx) => {
            const first = await tx.fetchval<number>('SELECT pg_backend_pid()');
            await two.db.execute('INSERT INTO items VALUES (1)');
            const other = await second.fetchval<number>('SELECT pg_backend_pid()');
            await second.execute('INSERT INTO items VALUES (2)'); // autocommit on its own connection
            // A transaction of the second connection inside: the first connection's calls there still join the first's.
            const firstFromSecond = await second.transaction(async () => two.db.fetchval<number>('SELECT pg_backend_pid()'));
            seen = [first, other, firstFromSecond];
            throw thrown;
          })
          .catch((e: unknown) => e);
        expect(error).toBe(thrown);
        expect(seen[1]).not.toBe(seen[0]);
        expect(seen[2]).toBe(seen[0]);
        expect(await two.db.fetch('SELECT id FROM items ORDER BY id')).toEqual([{ id: 2 }]);
      } finally {
        await two.close();
      }
    });

    it('a retried transaction reruns its joined work with it', async () => {
      const bothRead = meeting(2);
      let attempts = 0;
      const increment = () =>
        f.db.transaction(
          async () => {
            attempts++;
            const n = await f.db.fetchval<number>('SELECT n FROM counters WHERE id = 1');
            await bothRead();
            await f.db.execute('UPDATE counters SET n = $1 WHERE id = 1', [n + 1]);
          },
          { isolationLevel: 'serializable' },
        );
      const results = await Promise.allSettled([increment(), increment()]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
      expect(attempts).toBe(3);
      expect(await f.db.fetchval('SELECT n FROM counters WHERE id = 1')).toBe(102);
    });
  });

  describe('@Transactional() on a Nest provider', () => {
    it('commits what the method did, and rolls it back when it throws (the error propagates as itself)', async () => {
      const pid = await ledger.record([1, 2]);
      expect(pid).toEqual(expect.any(Number));
      expect(await ids()).toEqual([1, 2]);
      const thrown = new Abandon('method failed');
      await expect(ledger.record([3, 4], thrown)).rejects.toBe(thrown);
      expect(await ids()).toEqual([1, 2]);
      expect(checkedOut(f.db)).toBe(0);
    });

    it('nested @Transactional methods share one transaction: one backend, rolled back together, a failing inner one alone', async () => {
      const [outerPid, innerPid] = await ledger.recordBoth(1, 2);
      expect(innerPid).toBe(outerPid);
      expect(await ids()).toEqual([1, 2]);

      await f.db.execute('TRUNCATE items');
      const thrown = new Abandon('outer');
      await expect(ledger.recordBoth(1, 2, { outerFails: thrown })).rejects.toBe(thrown);
      expect(await ids()).toEqual([]);

      expect(await ledger.recordBoth(1, 2, { innerFails: true })).toEqual([expect.any(Number), -1]);
      expect(await ids()).toEqual([1]);
    });

    it('joins a transaction the caller already runs (db.transaction around the method)', async () => {
      const thrown = new Abandon('caller rolls back');
      const error = await f.db
        .transaction(async (tx) => {
          const pid = await tx.fetchval<number>('SELECT pg_backend_pid()');
          expect(await ledger.record([1])).toBe(pid);
          throw thrown;
        })
        .catch((e: unknown) => e);
      expect(error).toBe(thrown);
      expect(await ids()).toEqual([]);
    });

    it('a serialization failure reruns the whole outermost method, its nested method and joined calls with it (the nested one never retries alone)', async () => {
      ledger.afterRead = meeting(2);
      const results = await Promise.allSettled([ledger.increment(), ledger.increment()]);
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled']);
      expect(ledger.runs.increment).toBe(3);
      expect(ledger.runs.write).toBe(3); // `write` ran once per run of `increment`, though it says retries: 0
      expect(await f.db.fetchval('SELECT n FROM counters WHERE id = 1')).toBe(102);
    });

    it('refuses a method whose connection is not running, naming it', async () => {
      class Elsewhere {
        @Transactional({ connection: 'reporting' })
        async run(): Promise<number> {
          return 1;
        }
      }
      const error = await new Elsewhere().run().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidQueryError);
      expect((error as Error).message).toMatch(/no running SecureDatabaseModule connection named 'reporting'/);
    });
  });
});

/** A plain class (not a provider) whose method is @Transactional(). */
class ItemWriter {
  constructor(private readonly db: DatabaseService) {}

  @Transactional()
  async add(id: number): Promise<number> {
    return this.db.execute('INSERT INTO items VALUES ($1)', [id]);
  }
}

describe('@Transactional() finding its service', () => {
  it('refuses bad options when the class is defined', () => {
    expect(() => Transactional({ isolationLevel: 'serializable; DROP TABLE items' as never })).toThrow(InvalidQueryError);
    expect(() => Transactional({ retries: -1 })).toThrow(InvalidQueryError);
    expect(() => Transactional({ connection: '' })).toThrow(InvalidQueryError);
  });

  it('with two apps on one connection name: refused outside their transactions, joins the one whose transaction the caller is in, none once both closed', async () => {
    const a = await directTarget().start();
    const b = await directTarget().start();
    try {
      await Promise.all([prepare(a.db), prepare(b.db)]);
      const error = await new ItemWriter(a.db).add(1).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(InvalidQueryError);
      expect((error as Error).message).toMatch(/found 2 running SecureDatabaseModule connections named 'default'/);
      await b.db.transaction(() => new ItemWriter(b.db).add(7));
      expect(await b.db.fetch('SELECT id FROM items')).toEqual([{ id: 7 }]);
      expect(await a.db.fetch('SELECT id FROM items')).toEqual([]);
    } finally {
      await a.close();
      await b.close();
    }
    const none = await new ItemWriter(a.db).add(2).catch((e: unknown) => e);
    expect(none).toBeInstanceOf(InvalidQueryError);
    expect((none as Error).message).toMatch(/found no running SecureDatabaseModule connection named 'default'/);
  });
});
