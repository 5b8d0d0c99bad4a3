import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { harness, scratchDatabase } from '../support/harness.js';
import type { LogCapture } from '../support/log-capture.js';
import { createFailingRoutesApp } from './failing-routes-app.js';

const h = harness();

// The production spec proves names and values never leave; this one proves they were there to leak
// (the driver messages do carry them), and that development gets them for debugging.
describe('DatabaseExceptionFilter in development', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
  });
  afterAll(() => scratch.drop());

  describe('appEnv development on the module (APP_FILTER provider)', () => {
    let app: INestApplication;
    let logs: LogCapture;
    beforeAll(async () => {
      ({ app, logs } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'development', deps: { admin: h.tls } }));
    });
    afterAll(() => app.close());

    it.each(['raw', 'typed'])('adds the driver message to the body and message + detail to the log (%s)', async (path) => {
      logs.clear();
      const res = await request(app.getHttpServer()).get(`/fail/statement/${path}/unique`);
      expect(res.status).toBe(409);
      expect(res.body).toMatchObject({ statusCode: 409, code: 'DB_UNIQUE_VIOLATION', sqlstate: '23505', message: 'A record with these values already exists' });
      expect(res.body.detail).toContain('duplicate key value violates unique constraint "secret_uq_k9"');
      expect(logs.text()).toContain('secret_uq_k9');
      expect(logs.text()).toContain('Key (secret_col_q3)=(secret-dup-value) already exists');
    });
  });

  describe('useGlobalFilters(new DatabaseExceptionFilter(adapterHost)): APP_ENV decides', () => {
    const saved = process.env.APP_ENV;
    let app: INestApplication | undefined;
    afterEach(async () => {
      await app?.close();
      if (saved === undefined) delete process.env.APP_ENV;
      else process.env.APP_ENV = saved;
    });

    it.each([
      ['development', true],
      ['test', true],
      ['staging', false],
      [undefined, false],
    ])('APP_ENV=%s -> driver detail in the body: %s', async (appEnv, verbose) => {
      if (appEnv === undefined) delete process.env.APP_ENV;
      else process.env.APP_ENV = appEnv;
      let logs: LogCapture;
      ({ app, logs } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'production', deps: { admin: h.tls }, filter: 'global', schema: false }));
      const res = await request(app.getHttpServer()).get('/fail/statement/raw/unique');
      expect(res.status).toBe(409);
      expect('detail' in res.body).toBe(verbose);
      expect(logs.text().includes('secret_uq_k9')).toBe(verbose);
    });

    it('given ModuleRef too, the module appEnv wins over APP_ENV', async () => {
      process.env.APP_ENV = 'production';
      ({ app } = await createFailingRoutesApp({ url: scratch.cluster.url(), caPem: h.caPem, appEnv: 'development', deps: { admin: h.tls }, filter: 'global-module-ref', schema: false }));
      const res = await request(app.getHttpServer()).get('/fail/statement/typed/unique');
      expect(res.status).toBe(409);
      expect(res.body.detail).toContain('secret_uq_k9');
    });
  });
});
