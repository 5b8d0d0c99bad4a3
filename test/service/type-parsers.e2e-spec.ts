import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import pg from 'pg';
import { Int8OutOfRangeError } from '../../src/index.js';
import { readDatabaseEnv } from '../../src/secure-database/config/database.config.js';
import { type ServiceFixture, startService } from './service-fixture.js';

// Values past 2^53 that a number would round: 9007199254740993 reads back as ...992.
const UNSAFE = '9007199254740993';
const TABLE_SQL = `
  CREATE TABLE ledger (id int8 PRIMARY KEY, amount numeric(20, 4), ids int8[]);
  INSERT INTO ledger VALUES (1, 12.5000, '{1,NULL,3}'), (2, 0.1000, '{{4,5},{6,7}}')`;

describe('int8 and numeric parsing per module', () => {
  let asNumber: ServiceFixture;
  let asBigint: ServiceFixture;
  let asDefault: ServiceFixture;
  let raw: pg.Pool;

  beforeAll(async () => {
    // Two modules (and one with pg's defaults) in one process, and a raw pg.Pool beside them.
    asNumber = await startService({ int8: 'number', numeric: 'number' });
    asBigint = await startService(readDatabaseEnv({ DATABASE_INT8: 'bigint' }));
    asDefault = await startService();
    for (const f of [asNumber, asBigint, asDefault]) for (const statement of TABLE_SQL.split(';')) await f.db.execute(statement);
    raw = new pg.Pool({ ...asDefault.cluster.clientConfig(), ssl: { ca: asDefault.h.caPem }, max: 1 });
  });

  afterAll(async () => {
    await raw?.end();
    for (const f of [asNumber, asBigint, asDefault]) await f?.close();
  });

  const LEDGER = 'SELECT count(*) AS n, sum(id) AS total FROM ledger';

  it('int8 as number: count(*), int8 columns and int8 arrays (NULLs and nesting kept); numeric as number', async () => {
    expect(await asNumber.db.fetchrow(LEDGER)).toEqual({ n: 2, total: 3 }); // sum(int8) is numeric
    expect(await asNumber.db.fetch('SELECT id, amount, ids FROM ledger ORDER BY id')).toEqual([
      { id: 1, amount: 12.5, ids: [1, null, 3] },
      { id: 2, amount: 0.1, ids: [[4, 5], [6, 7]] },
    ]);
    expect(await asNumber.db.fetchval('SELECT $1::int8', [String(Number.MAX_SAFE_INTEGER)])).toBe(Number.MAX_SAFE_INTEGER);
    expect(await asNumber.db.fetchval('SELECT ARRAY[1.5, NULL]::numeric[]')).toEqual([1.5, null]);
    // The module's own pg.Pool (@InjectPool()) is one of its pools: same parsers.
    expect((await asNumber.db.pool.query('SELECT count(*) AS n FROM ledger')).rows).toEqual([{ n: 2 }]);
  });

  it('int8 as bigint (from DATABASE_INT8), numeric left as pg has it', async () => {
    expect(await asBigint.db.fetchrow('SELECT count(*) AS n, $1::int8 AS big, ARRAY[1, NULL]::int8[] AS ids, 12.5::numeric AS amount', [UNSAFE])).toEqual({
      n: 1n,
      big: 9007199254740993n,
      ids: [1n, null],
      amount: '12.5',
    });
  });

  it('an int8 outside the safe range is an Int8OutOfRangeError naming no value, through the helpers and streams; the connection stays usable', async () => {
    for (const read of [
      () => asNumber.db.fetchval('SELECT $1::int8', [UNSAFE]),
      () => asNumber.db.fetch('SELECT ARRAY[1, $1::int8] AS ids', [`-${UNSAFE}`]),
      () => asNumber.db.transaction((tx) => tx.fetchval('SELECT $1::int8', [UNSAFE])),
      async () => {
        for await (const _ of asNumber.db.stream('SELECT g::int8 * 4503599627370496 AS v FROM generate_series(1, 5) g', [], { batchSize: 1 }));
      },
    ]) {
      const error = await read().catch((e: unknown) => e);
      expect(error).toBeInstanceOf(Int8OutOfRangeError);
      expect((error as Error).message).not.toMatch(/9007|4503|18014/);
    }
    expect(await asNumber.db.fetchval('SELECT count(*) FROM ledger')).toBe(2);
  });

  it('modules with other settings and a raw pg.Pool keep pg’s strings', async () => {
    expect(await asDefault.db.fetchrow('SELECT count(*) AS n, 12.5::numeric AS amount, ARRAY[1]::int8[] AS ids')).toEqual({ n: '1', amount: '12.5', ids: ['1'] });
    expect((await raw.query('SELECT count(*) AS n, 12.5::numeric AS amount, ARRAY[1]::int8[] AS ids')).rows[0]).toEqual({ n: '1', amount: '12.5', ids: ['1'] });
  });
});
