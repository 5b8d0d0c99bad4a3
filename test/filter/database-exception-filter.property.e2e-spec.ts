import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import fc from 'fast-check';
import type pg from 'pg';
import request from 'supertest';
import { getPoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness, scratchDatabase } from '../support/harness.js';
import type { LogCapture } from '../support/log-capture.js';
import { createFailingRoutesApp } from './failing-routes-app.js';
import { HOSTILE_CASES } from './failing-routes.js';

const h = harness();

const HOSTILE_FRAGMENTS = [
  "'; DROP TABLE users; --",
  'secret_table_x7',
  'public.accounts',
  'pg_catalog.pg_authid',
  '"quoted_ident"',
  "O'Reilly",
  'SELECT * FROM secret_table_x7 WHERE 1=1',
  '$1::text',
  '\\x00\\n',
  '%s%n%d',
  '<script>alert(1)</script>',
  'ünïcødé ✓ 表',
  ' ',
];

/** A hostile string ending in a marker no clean output contains, so its absence is provable. */
const hostileValue = fc
  .record({
    fragment: fc.constantFrom(...HOSTILE_FRAGMENTS),
    noise: fc.oneof(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary-ascii', maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 4 })),
    tag: fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789'), minLength: 10, maxLength: 10 }),
  })
  .map(({ fragment, noise, tag }) => ({ value: `${fragment}${noise}HX${tag}`, marker: `HX${tag}` }));

describe('DatabaseExceptionFilter property: hostile values never reach a production body or log', () => {
  let app: INestApplication;
  let logs: LogCapture;
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    ({ app, logs } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'production', deps: { admin: h.tls } }));
  });
  afterAll(async () => {
    await app?.close();
    await scratch?.drop();
  });

  it('the server does echo such values (so the property below can fail)', async () => {
    const raw = app.get<pg.Pool>(getPoolToken());
    await expect(raw.query('SELECT $1::int', ["secret_table_x7'; --HXmarker"])).rejects.toThrow("secret_table_x7'; --HXmarker");
    await expect(raw.query('SELECT 1 FROM "secret_table_x8"')).rejects.toThrow('secret_table_x8');
  });

  it('holds for generated values, through the raw and the typed path', async () => {
    await fc.assert(
      fc.asyncProperty(hostileValue, fc.constantFrom('raw', 'typed'), async ({ value, marker }, path) => {
        for (const kind of Object.keys(HOSTILE_CASES)) {
          logs.clear();
          const res = await request(app.getHttpServer())
            .get(`/fail/hostile/${path}/${kind}/${encodeURIComponent(value)}`)
            .set('x-request-id', 'property-req');
          expect(res.status).toBeGreaterThanOrEqual(400);
          expect(res.body.code).toMatch(/^DB_/);
          expect(Object.keys(res.body).sort()).toEqual(expect.arrayContaining(['code', 'error', 'message', 'statusCode']));
          expect(res.body.detail).toBeUndefined();
          for (const text of [res.text, logs.text()]) {
            expect(text).not.toContain(marker);
            expect(text).not.toContain(value);
            expect(text).not.toContain(encodeURIComponent(value));
            expect(text).not.toMatch(/secret/i);
          }
        }
      }),
      { numRuns: 50 },
    );
  }, 120_000);
});
