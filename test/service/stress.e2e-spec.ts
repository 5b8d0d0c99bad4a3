import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { NotFoundError, QueryError, SecureDatabaseError, UniqueViolationError, sql } from '../../src/index.js';
import { type ServiceFixture, poolSettled, startService } from './service-fixture.js';

const QUERIES = 10_000;
const TRANSACTIONS = 1_000;
// More workers than pooled connections (10), so callers queue for connections too.
const CONCURRENCY = 24;

/** Deterministic pseudo-random numbers (mulberry32), so a failure can be replayed. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function runBounded(count: number, concurrency: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

class RandomFailure extends Error {}

describe('no connection leaks under load', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService();
    await f.db.execute('CREATE TABLE items (id int PRIMARY KEY, note text)');
    await f.db.execute('CREATE TABLE committed (id int PRIMARY KEY)');
    await f.db.execute('INSERT INTO items SELECT g, $1 FROM generate_series(1, 100) g', ['seed']);
  });

  afterAll(async () => {
    await f?.close();
  });

  it(`${QUERIES} mixed queries and ${TRANSACTIONS} transactions with random failures leave no client checked out`, async () => {
    const next = random(20_240_611);
    const outcomes = new Map<string, number>();
    const count = (outcome: string) => outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    const expectFailure = async (promise: Promise<unknown>, type: abstract new (...args: never[]) => Error, outcome: string) => {
      await expect(promise).rejects.toBeInstanceOf(type);
      count(outcome);
    };

    await runBounded(QUERIES, CONCURRENCY, async (i) => {
      const id = 1 + Math.floor(next() * 100);
      const kind = Math.floor(next() * 8);
      if (kind === 0) expect(await f.db.fetchval(sql`SELECT ${i}::int`)).toBe(i);
      else if (kind === 1) expect(await f.db.fetchrow('SELECT id FROM items WHERE id = $1', [id])).toEqual({ id });
      else if (kind === 2) expect(await f.db.fetch(sql`SELECT id FROM items WHERE id = ANY(${sql.array([id, id + 1], 'int4')})`)).not.toHaveLength(0);
      else if (kind === 3) expect(await f.db.execute('UPDATE items SET note = $1 WHERE id = $2', [`q${i}`, id])).toBe(1);
      else if (kind === 4) expect(await f.db.fetchMaybeRow('SELECT id FROM items WHERE id = $1', [-id])).toBeNull();
      else if (kind === 5) return expectFailure(f.db.fetchrow('SELECT id FROM items WHERE id < 0'), NotFoundError, 'not found');
      else if (kind === 6) return expectFailure(f.db.execute('SELECT FROM nowhere WHERE'), QueryError, 'syntax error');
      else return expectFailure(f.db.execute('INSERT INTO items (id) VALUES ($1)', [id]), UniqueViolationError, 'unique violation');
      count('ok');
    });

    const committed: number[] = [];
    await runBounded(TRANSACTIONS, CONCURRENCY, async (i) => {
      const failure = Math.floor(next() * 5);
      const result = f.db
        .transaction(async (tx) => {
          await tx.execute('INSERT INTO committed (id) VALUES ($1)', [i]);
          await tx.execute('UPDATE items SET note = $1 WHERE id = $2', [`t${i}`, 1 + (i % 100)]);
          if (failure === 1) throw new RandomFailure(`transaction ${i}`);
          if (failure === 2) await tx.execute('INSERT INTO committed (id) VALUES ($1)', [i]); // unique violation
          if (failure === 3) await tx.fetchrow('SELECT id FROM items WHERE id < 0'); // NotFoundError
          return i;
        })
        .then(
          (id) => {
            committed.push(id);
            return 'committed';
          },
          (error: unknown) => {
            if (error instanceof RandomFailure) return 'user error';
            if (error instanceof SecureDatabaseError) return error.code;
            throw error;
          },
        );
      count(`transaction: ${await result}`);
    });

    const stored = await f.db.fetch<{ id: number }>('SELECT id FROM committed ORDER BY id');
    expect(stored.map((r) => r.id)).toEqual(committed.sort((a, b) => a - b));
    expect(committed.length).toBeGreaterThan(TRANSACTIONS / 5);
    expect(committed.length).toBeLessThan(TRANSACTIONS);
    for (const outcome of ['ok', 'not found', 'syntax error', 'unique violation', 'transaction: user error', 'transaction: DB_UNIQUE_VIOLATION', 'transaction: DB_NOT_FOUND']) {
      expect(outcomes.get(outcome)).toBeGreaterThan(0);
    }

    // Reads that joined a shared connection hand back the connections they had asked for just after they resolved.
    await poolSettled(f.db);
    expect(f.db.pool.totalCount - f.db.pool.idleCount).toBe(0);
    expect(f.db.pool.waitingCount).toBe(0);
    expect(f.db.stats().inFlight).toBe(0);
    expect(f.db.pool.totalCount).toBeLessThanOrEqual(10);
  }, 180_000);
});
