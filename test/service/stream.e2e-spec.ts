import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import Cursor from 'pg-cursor';
import { ConnectionError, InvalidQueryError, QueryError, StatementTimeoutError, sql } from '../../src/index.js';
import { appConnections, waitForActivity } from '../support/server-faults.js';
import { type ServiceFixture, checkedOut, poolSettled, startService } from './service-fixture.js';

const APP = `stream-spec-${process.pid}`;
// The timeout covers a whole stream: enough for the 20,000-row reads on a loaded machine, short enough
// for the timeout tests below to exceed it on purpose.
const STATEMENT_TIMEOUT_MS = 3000;
// A consumer slow enough to outlast it (and pg's own client-side timer, statement + connect = 4 s).
const SLOW_ROWS = 50;

class ConsumerFailed extends Error {}

/** Collects a stream, or the error it ended with. */
async function drain<R>(rows: AsyncIterable<R>): Promise<{ rows: R[]; error?: unknown }> {
  const seen: R[] = [];
  try {
    for await (const row of rows) seen.push(row);
    return { rows: seen };
  } catch (error) {
    return { rows: seen, error };
  }
}

describe('DatabaseService.stream', () => {
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await startService({ poolMax: 2, applicationName: APP, statementTimeoutMs: STATEMENT_TIMEOUT_MS, connectTimeoutMs: 1000, maxRows: 100 });
    await f.db.execute('CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)');
    await f.db.execute(sql`INSERT INTO items SELECT g, 'item-' || g FROM generate_series(1, 20000) g`);
  });
  afterAll(() => f?.close());

  /** Nothing checked out or queued, and the server sees no backend of ours busy or inside a transaction. */
  async function expectReleased(): Promise<void> {
    await poolSettled(f.db);
    expect({ checkedOut: checkedOut(f.db), inFlight: f.db.stats().inFlight, waiting: f.db.stats().waiting }).toEqual({ checkedOut: 0, inFlight: 0, waiting: 0 });
    const rows = await waitForActivity(f.cluster, (all) => all.filter((r) => r.applicationName === APP).every((r) => r.state === 'idle'));
    expect(rows.filter((r) => r.applicationName === APP && r.state !== 'idle')).toEqual([]);
  }

  it('reads a result far over maxRows, in order, over the extended protocol, and releases its connection', async () => {
    const { rows, error } = await drain(f.db.stream<{ id: number; label: string }>(sql`SELECT id, label FROM items WHERE id > ${0} ORDER BY id`, { batchSize: 100 }));
    expect(error).toBeUndefined();
    expect(rows).toHaveLength(20000);
    expect(rows[0]).toEqual({ id: 1, label: 'item-1' });
    expect(rows.every((row, i) => row.id === i + 1)).toBe(true);
    await expectReleased();
    const twoStatements = await drain(f.db.stream('SELECT 1; SELECT 2'));
    expect(twoStatements.error).toMatchObject({ sqlstate: '42601' });
    await expectReleased();
  });

  it('asks for the next batch only when the loop wants it (a slow consumer makes nothing buffer)', async () => {
    const read = jest.spyOn(Cursor.prototype, 'read');
    try {
      let seen = 0;
      for await (const _row of f.db.stream('SELECT id FROM items ORDER BY id', [], { batchSize: 10 })) {
        if (++seen === 25) {
          await sleep(200); // a slow consumer: no read ahead meanwhile
          expect(read).toHaveBeenCalledTimes(3);
          break;
        }
      }
    } finally {
      read.mockRestore();
    }
    await expectReleased();
  });

  it('break, and a throw in the loop body, close the portal and release the connection', async () => {
    let pid = 0;
    for await (const row of f.db.stream<{ pid: number }>('SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 100000) g', [], { batchSize: 50 })) {
      pid = row.pid;
      break;
    }
    await expectReleased();
    const thrown = new ConsumerFailed('the consumer failed');
    const error = await (async () => {
      for await (const _row of f.db.stream('SELECT g FROM generate_series(1, 100000) g', [], { batchSize: 50 })) throw thrown;
    })().catch((e: unknown) => e);
    expect(error).toBe(thrown);
    await expectReleased();
    // The same backends serve ordinary queries afterwards.
    const pids = await Promise.all([f.db.fetchval<number>('SELECT pg_backend_pid()'), f.db.fetchval<number>('SELECT pg_backend_pid()')]);
    expect(pids).toContain(pid);
  });

  it('a server error mid-stream surfaces typed and sanitized, after the rows before it', async () => {
    const { rows, error } = await drain(f.db.stream('SELECT 1 / (g - 150) AS v, g FROM generate_series(1, 1000) g', [], { batchSize: 100 }));
    expect(error).toBeInstanceOf(QueryError);
    expect(error).toMatchObject({ sqlstate: '22012' });
    expect((error as Error).message).not.toMatch(/generate_series|division/);
    expect(rows).toHaveLength(100); // the first batch; the second failed
    await expectReleased();
  });

  it('the statement timeout ends a stream that never finishes', async () => {
    const started = performance.now();
    const { error } = await drain(f.db.stream('SELECT g, pg_sleep(0.1) FROM generate_series(1, 1000000) g', [], { batchSize: 100 }));
    expect(error).toBeInstanceOf(StatementTimeoutError);
    expect(performance.now() - started).toBeLessThan(STATEMENT_TIMEOUT_MS + 2000);
    await expectReleased();
  });

  it('the statement timeout covers the whole stream, pauses included; a longer one is set for that transaction alone', async () => {
    // A slow consumer (50 × 100 ms) against a 3 s statement_timeout: the server ends it.
    const slow = async (rows: AsyncIterable<unknown>) => {
      let seen = 0;
      for await (const _row of rows) {
        seen++;
        await sleep(100);
      }
      return seen;
    };
    await expect(slow(f.db.stream(sql`SELECT g FROM generate_series(1, ${SLOW_ROWS}::int) g`, { batchSize: 1 }))).rejects.toBeInstanceOf(StatementTimeoutError);
    await expectReleased();
    // The README's recipe: a longer timeout for this transaction only. It also outlives pg's own client-side
    // timer (statement + connect = 4 s here), which the module disarms for streams.
    const seen = await f.db.transaction(
      async (tx) => {
        await tx.fetchval(sql`SELECT pg_catalog.set_config('statement_timeout', ${'10s'}, true)`);
        return slow(tx.stream(sql`SELECT g FROM generate_series(1, ${SLOW_ROWS}::int) g`, { batchSize: 1 }));
      },
      { readOnly: true },
    );
    expect(seen).toBe(SLOW_ROWS);
    expect(await f.db.fetchval('SHOW statement_timeout')).toBe('3s');
    await expectReleased();
  });

  it('pg_terminate_backend mid-stream: a sanitized connection error, the broken connection is dropped, the pool recovers', async () => {
    const totalBefore = f.db.pool.totalCount;
    let pid = 0;
    const result = await drain(
      (async function* (db) {
        for await (const row of db.stream<{ pid: number }>('SELECT pg_backend_pid() AS pid, g FROM generate_series(1, 100000) g', [], { batchSize: 100 })) {
          if (pid === 0) {
            pid = row.pid;
            await f.cluster.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
          }
          yield row;
        }
      })(f.db),
    );
    expect(result.error).toBeInstanceOf(ConnectionError);
    expect((result.error as Error).message).not.toMatch(/terminat.*administrator command|FATAL/);
    expect(f.db.pool.totalCount).toBeLessThanOrEqual(totalBefore);
    expect(await f.db.fetchval<number>('SELECT pg_backend_pid()')).not.toBe(pid);
    await expectReleased();
  });

  it('inside a transaction: sees its uncommitted rows; other queries on the handle wait for the loop to end', async () => {
    await f.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO items VALUES (${30001}, ${'uncommitted'})`);
      const labels: string[] = [];
      for await (const row of tx.stream<{ label: string }>(sql`SELECT label FROM items WHERE id > ${20000}`)) {
        labels.push(row.label);
        await expect(tx.fetchval('SELECT 1')).rejects.toThrow(InvalidQueryError);
      }
      expect(labels).toEqual(['uncommitted']);
      expect(await tx.fetchval('SELECT 1')).toBe(1); // the stream is over
      throw new ConsumerFailed('roll back');
    }).catch((e: unknown) => expect(e).toBeInstanceOf(ConsumerFailed));
    expect(await f.db.fetchMaybeRow(sql`SELECT 1 FROM items WHERE id = ${30001}`)).toBeNull();
    await expectReleased();
  });

  it('sends nothing until the loop starts; bad options are refused', async () => {
    f.db.stream('SELECT pg_sleep(5)'); // never iterated
    expect((await appConnections(f.cluster, APP)).filter((r) => r.state === 'active')).toEqual([]);
    expect(() => f.db.stream('SELECT 1', [], { batchSize: 0 })).toThrow(InvalidQueryError);
  });

  it('batchSize is bounded by maxRows (a batch is held in memory whole); the default batch fits under a low maxRows', async () => {
    // maxRows is 100 here: a batch of 101 would buffer more than any buffered query may.
    expect(() => f.db.stream('SELECT 1', [], { batchSize: 101 })).toThrow(InvalidQueryError);
    expect(() => f.db.stream(sql`SELECT 1`, { batchSize: 1_000_000 })).toThrow(
      "batchSize must be at most 100, the module's maxRows (DATABASE_MAX_ROWS), since each batch is held in memory: lower batchSize or raise DATABASE_MAX_ROWS",
    );
    const read = jest.spyOn(Cursor.prototype, 'read');
    try {
      const { rows } = await drain(f.db.stream('SELECT g FROM generate_series(1, 250) g', [], { batchSize: 100 }));
      expect(rows).toHaveLength(250);
      await drain(f.db.stream('SELECT g FROM generate_series(1, 250) g')); // the default, 500, is lowered to maxRows
      expect(read.mock.calls.map(([size]) => size)).toEqual([100, 100, 100, 100, 100, 100, 100, 100]);
    } finally {
      read.mockRestore();
    }
    await expectReleased();
  });
});
