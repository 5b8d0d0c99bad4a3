import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  CopyDataError,
  InvalidQueryError,
  QueryCancelledError,
  StatementTimeoutError,
  databaseErrorStatus,
  sql,
} from '../../src/index.js';
import { type ServiceFixture, deferred, poolSettled, waitForBackendExit } from '../service/service-fixture.js';
import { type TransactionTarget, directTarget, transactionPoolerTarget } from '../service/transaction-targets.js';

// Every value that needs escaping in the text format, and every kind of value copyFrom encodes.
const TRICKY_TEXT = ['', 'plain', 'back\\slash', 'tab\there', 'new\nline', 'carriage\rreturn', '\\N', '\\.', 'end\\', 'quote"\'', 'unicode é 🎉 日本', '{a,b}', '  spaces  '];

const COLUMNS = ['id', 'txt', 'num', 'big', 'flag', 'at', 'doc', 'bin', 'tags', 'grid', 'f8'];
const TABLE_DDL = (name: string) =>
  `CREATE TABLE IF NOT EXISTS ${name} (id int PRIMARY KEY, txt text, num numeric, big int8, flag boolean, at timestamptz, doc jsonb, bin bytea, tags text[], grid int[][], f8 float8)`;

function trickyRows(): unknown[][] {
  const rows: unknown[][] = [];
  TRICKY_TEXT.forEach((txt, i) => {
    rows.push([
      i + 1,
      txt,
      i % 2 ? '12345678901234567890.123456789' : -0.5,
      i % 3 ? 9007199254740993n : null,
      i % 2 === 0,
      new Date(Date.UTC(2024, 1, 29, 23, 59, 59, 123) + i),
      { text: txt, nested: { list: [1, null, 'x\ty'] }, empty: '' },
      Buffer.from([0, 9, 10, 13, 92, 255, i]),
      [txt, null, 'NULL', 'comma,brace}', 'quote"', 'back\\slash'],
      [
        [1, 2],
        [3, null],
      ],
      [-0, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1e-300][i % 5],
    ]);
  });
  rows.push([1000, null, null, null, null, null, null, null, null, null, null]);
  return rows;
}

async function* generated(count: number, make: (i: number) => unknown[]): AsyncGenerator<unknown[]> {
  for (let i = 1; i <= count; i++) yield make(i);
}

function describeCopy(target: TransactionTarget): void {
  describe(`COPY ${target.name}`, () => {
    let f: ServiceFixture;

    beforeAll(async () => {
      await target.setUp();
      f = await target.start({ poolMax: 3, statementTimeoutMs: 60_000 });
      await f.db.execute(TABLE_DDL('copied'));
      await f.db.execute(TABLE_DDL('inserted'));
      await f.db.execute('CREATE TABLE IF NOT EXISTS strict_rows (id int PRIMARY KEY, code varchar(3) NOT NULL)');
    });
    afterAll(async () => {
      await f?.close();
      await target.tearDown();
    });

    /** No connection checked out, and every pooled one answers (none left mid-COPY or in a transaction). */
    async function expectHealthyPool(): Promise<void> {
      await poolSettled(f.db);
      expect(f.db.stats().inFlight).toBe(0);
      const answers = await Promise.all([1, 2, 3].map((n) => f.db.fetchval<number>(sql`SELECT ${n}::int`)));
      expect(answers).toEqual([1, 2, 3]);
    }

    /** Sessions of this database still in a COPY, once none is (polled up to 5 s: the server sees a closed socket soon after). */
    async function copiesLeftOnServer(): Promise<number> {
      return f.cluster.withSuperuser(async (admin) => {
        let left = 0;
        for (let i = 0; i < 200; i++) {
          const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'COPY %' AND state <> 'idle'", [f.cluster.facts.database]);
          left = rows[0].n;
          if (left === 0) return 0;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        return left;
      });
    }

    it('round-trips every kind of value exactly: the same rows as bound parameters give, and copyTo reads them back as text', async () => {
      await f.db.execute('TRUNCATE copied, inserted');
      const rows = trickyRows();
      expect(await f.db.copyFrom('copied', COLUMNS, rows)).toBe(rows.length);
      for (const row of rows) await f.db.execute(`INSERT INTO inserted (${COLUMNS.join(', ')}) VALUES (${COLUMNS.map((_c, i) => `$${i + 1}`).join(', ')})`, row);
      // Each value as its type's output function writes it (format's %s), which is what COPY TO sends.
      // Row for row identical to the parameter path, in both directions (float8 NaN = NaN in PostgreSQL).
      const differ = await f.db.fetchval<number>(
        'SELECT count(*)::int FROM ((TABLE copied EXCEPT ALL TABLE inserted) UNION ALL (TABLE inserted EXCEPT ALL TABLE copied)) d',
      );
      expect(differ).toBe(0);
      // And what the values are, not only that both paths agree.
      const back = await f.db.fetchrow<{ txt: string; bin: Buffer; tags: unknown[]; doc: unknown }>('SELECT txt, bin, tags, doc FROM copied WHERE id = 5');
      expect(back).toEqual({ txt: 'new\nline', bin: Buffer.from([0, 9, 10, 13, 92, 255, 4]), tags: ['new\nline', null, 'NULL', 'comma,brace}', 'quote"', 'back\\slash'], doc: rows[4][6] });
      expect(await f.db.fetchval('SELECT txt FROM copied WHERE id = 7')).toBe('\\N');
      expect(await f.db.fetchval('SELECT txt IS NULL FROM copied WHERE id = 1000')).toBe(true);

      const expected = await f.db.fetch<Record<string, string | null>>(`SELECT ${COLUMNS.map((c) => `CASE WHEN ${c} IS NOT NULL THEN format('%s', ${c}) END AS ${c}`).join(', ')} FROM copied ORDER BY copied.id`);
      const copiedOut: Array<Array<string | null>> = [];
      for await (const row of f.db.copyTo('SELECT * FROM copied ORDER BY id')) copiedOut.push(row);
      expect(copiedOut).toEqual(expected.map((row) => COLUMNS.map((c) => row[c])));
      await expectHealthyPool();
    });

    // A million once (direct); behind PgBouncer the same path with a tenth, to keep CI's time reasonable.
    const BIG = target.name.startsWith('direct') ? 1_000_000 : 100_000;

    it(`${BIG.toLocaleString('en')} rows with values that need escaping go in and come out exactly`, async () => {
      await f.db.execute('DROP TABLE IF EXISTS big');
      await f.db.execute('CREATE TABLE big (id int, label text, note text)');
      const label = (i: number) => `r${i}\t\\\n\r"é`;
      const note = (i: number) => (i % 7 === 0 ? null : i % 7 === 1 ? '\\N' : `n${i % 1000}`);
      const count = await f.db.copyFrom('big', ['id', 'label', 'note'], generated(BIG, (i) => [i, label(i), note(i)]));
      expect(count).toBe(BIG);
      // Checked by the server against the same formula, then read back by copyTo and checked here.
      const wrong = await f.db.fetchval<number>(
        `SELECT count(*)::int FROM big WHERE label IS DISTINCT FROM 'r' || id || E'\\t\\\\\\n\\r"é'
           OR note IS DISTINCT FROM CASE WHEN id % 7 = 0 THEN NULL WHEN id % 7 = 1 THEN '\\N' ELSE 'n' || id % 1000 END`,
      );
      expect(wrong).toBe(0);
      let seen = 0;
      let mismatches = 0;
      for await (const [id, gotLabel, gotNote] of f.db.copyTo('SELECT id, label, note FROM big ORDER BY id')) {
        seen++;
        if (id !== String(seen) || gotLabel !== label(seen) || gotNote !== note(seen)) mismatches++;
      }
      expect({ seen, mismatches }).toEqual({ seen: BIG, mismatches: 0 });
      await f.db.execute('DROP TABLE big');
      await expectHealthyPool();
    }, 120_000);

    it('a value the server refuses is CopyDataError (400) naming the row, never the value; no row is kept, no broken connection stays', async () => {
      await f.db.execute('TRUNCATE strict_rows');
      const rows = Array.from({ length: 5000 }, (_v, i) => [i + 1, i === 4321 ? 'SECRET-TOO-LONG' : 'ok']);
      const error = await f.db.copyFrom('strict_rows', ['id', 'code'], rows).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(CopyDataError);
      expect(error).toMatchObject({ row: 4322, sqlstate: '22001', code: 'DB_INVALID_INPUT' });
      expect((error as Error).message).not.toContain('SECRET');
      expect(JSON.stringify((error as Error).cause)).not.toContain('SECRET');
      expect(databaseErrorStatus(error as CopyDataError).status).toBe(400);
      const typeError = await f.db.copyFrom(['public', 'strict_rows'], ['id', 'code'], [[1, 'a'], ['not-a-number', 'b']]).catch((e: unknown) => e);
      expect(typeError).toMatchObject({ row: 2, sqlstate: '22P02' });
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(0);
      await expectHealthyPool();
    });

    it('values it cannot encode, and rows of the wrong width, are refused before the server sees them', async () => {
      await f.db.execute('TRUNCATE strict_rows');
      await expect(f.db.copyFrom('strict_rows', ['id', 'code'], [[1, 'a'], [2, 'nul\0']])).rejects.toMatchObject({ row: 2, message: expect.stringContaining('column 2') });
      await expect(f.db.copyFrom('strict_rows', ['id', 'code'], [[1, 'a'], [2]])).rejects.toBeInstanceOf(InvalidQueryError);
      await expect(f.db.copyFrom('strict_rows', [], [])).rejects.toBeInstanceOf(InvalidQueryError);
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(0);
      await expectHealthyPool();
    });

    it('an abandoned copy (the rows throw midway, or the signal aborts) keeps no row and discards its connection', async () => {
      await f.db.execute('TRUNCATE strict_rows');
      class SourceFailed extends Error {}
      async function* failing(): AsyncGenerator<unknown[]> {
        for (let i = 1; i <= 50_000; i++) {
          if (i === 40_000) throw new SourceFailed('the upload broke');
          yield [i, 'ok'];
        }
      }
      await expect(f.db.copyFrom('strict_rows', ['id', 'code'], failing())).rejects.toBeInstanceOf(SourceFailed);
      // Its server session is gone (not left waiting for COPY data, nor handed to the next caller).
      expect(await copiesLeftOnServer()).toBe(0);
      const controller = new AbortController();
      async function* aborting(): AsyncGenerator<unknown[]> {
        for (let i = 1; i <= 50_000; i++) {
          if (i === 30_000) controller.abort();
          yield [i, 'ok'];
        }
      }
      await expect(f.db.copyFrom('strict_rows', ['id', 'code'], aborting(), { signal: controller.signal })).rejects.toBeInstanceOf(QueryCancelledError);
      expect(await copiesLeftOnServer()).toBe(0);
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(0);
      await expectHealthyPool();
    });

    it('a copy whose rows stall past the statement timeout fails with StatementTimeoutError at the timeout, not when the rows resume', async () => {
      const resume = deferred();
      async function* stalling(): AsyncGenerator<unknown[]> {
        yield [1, 'ok'];
        await resume.promise;
        yield [2, 'ok'];
      }
      await f.db.execute('TRUNCATE strict_rows');
      await expect(f.db.copyFrom('strict_rows', ['id', 'code'], stalling(), { timeoutMs: 300 })).rejects.toBeInstanceOf(StatementTimeoutError);
      resume.resolve();
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(0);
      await expectHealthyPool();
    });

    it('a copyTo whose reader stops past the statement timeout loses its connection, and the next pull says why', async () => {
      if (target.name.includes('PgBouncer')) return; // the server backend seen below is PgBouncer's, not this copy's
      const rows = f.db.copyTo('SELECT pg_backend_pid(), g FROM generate_series(1, 200000) g', { timeoutMs: 300 });
      const first = await rows.next();
      const pid = Number((first.value as string[])[0]);
      await waitForBackendExit(f.cluster, pid); // the reader pauses until the module closed the connection
      // Rows of the chunk in hand may still come; then the stream ends with the reason, far from its end.
      let more = 0;
      const error = await (async () => {
        for await (const _row of rows) more++;
      })().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StatementTimeoutError);
      expect(more).toBeLessThan(199_999);
      await expectHealthyPool();
    });

    it('inside a transaction: the copy is part of it (seen by its queries, rolled back with it), and db.copyFrom in the callback joins it', async () => {
      await f.db.execute('TRUNCATE strict_rows');
      await expect(
        f.db.transaction(async (tx) => {
          expect(await tx.copyFrom('strict_rows', ['id', 'code'], [[1, 'a']])).toBe(1);
          expect(await f.db.copyFrom('strict_rows', ['id', 'code'], [[2, 'b']])).toBe(1);
          expect(await tx.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(2);
          const out: unknown[] = [];
          for await (const row of tx.copyTo('SELECT id, code FROM strict_rows ORDER BY id')) out.push(row);
          expect(out).toEqual([
            ['1', 'a'],
            ['2', 'b'],
          ]);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(0);
      await f.db.transaction(async (tx) => {
        await tx.copyFrom('strict_rows', ['id', 'code'], [[3, 'c']]);
      });
      expect(await f.db.fetchval('SELECT count(*)::int FROM strict_rows')).toBe(1);
      await expectHealthyPool();
    });

    it('copyTo: raw chunks, break midway discards the connection, and values are refused (COPY takes no parameters)', async () => {
      const bytes: Buffer[] = [];
      for await (const chunk of f.db.copyTo(sql`SELECT g, 'x' || g FROM generate_series(1, 3) g`, { chunks: true })) bytes.push(chunk);
      expect(Buffer.concat(bytes).toString()).toBe('1\tx1\n2\tx2\n3\tx3\n');
      let taken = 0;
      for await (const _row of f.db.copyTo('SELECT g FROM generate_series(1, 1000000) g')) {
        if (++taken === 10) break;
      }
      expect(() => f.db.copyTo(sql`SELECT ${1}`)).toThrow(InvalidQueryError);
      expect(() => f.db.copyTo('SELECT 1; DROP TABLE copied')).toThrow(InvalidQueryError);
      await expectHealthyPool();
    });
  });
}

describeCopy(directTarget());
describeCopy(transactionPoolerTarget());
