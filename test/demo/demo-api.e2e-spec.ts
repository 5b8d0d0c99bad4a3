import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { DatabaseService, sql } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { LogCapture } from '../support/log-capture.js';

const h = harness();
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// Names that must never reach a production body or log.
const SECRETS = ['users_email_key', 'users', 'email', 'INSERT', 'SELECT', 'UPDATE'];

/** The demo's AppModule, configured through the environment exactly as in production. */
async function startDemo(env: Record<string, string>, logs: LogCapture): Promise<INestApplication> {
  Object.assign(process.env, env);
  const { AppModule } = await import('../../src/demo/app.module.js');
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: logs });
  return app.init();
}

function expectSanitized(body: unknown, logs: LogCapture, values: string[]) {
  const text = `${JSON.stringify(body)}\n${logs.text()}`;
  for (const secret of [...SECRETS, ...values]) expect(body && JSON.stringify(body)).not.toContain(secret);
  for (const value of values) expect(text).not.toContain(value);
  expect(logs.text()).not.toMatch(/users_email_key|Key \(email\)/);
}

describe('demo HTTP API (production mode, TLS cluster)', () => {
  const logs = new LogCapture();
  let app: INestApplication;
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  const saved = { ...process.env };

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    app = await startDemo(
      {
        APP_ENV: 'production',
        DATABASE_URL: scratch.cluster.url({}, { host: 'localhost' }),
        DATABASE_SSL_ROOT_CERT: h.caPem,
        DATABASE_STATEMENT_TIMEOUT_MS: '1500',
        DATABASE_LOCK_TIMEOUT_MS: '1000',
      },
      logs,
    );
  });

  afterAll(async () => {
    await app?.close();
    await scratch?.drop();
    process.env = saved;
  });

  const http = () => request(app.getHttpServer());

  it('GET /health/live answers without the database', async () => {
    const res = await http().get('/health/live').expect(200);
    expect(res.body.status).toBe('ok');
  });

  it('GET /health is up with the TLS facts', async () => {
    const res = await http().get('/health').expect(200);
    expect(res.body.info.database).toMatchObject({ status: 'up', tls: true, sslmode: 'verify-full', serverIdentityVerified: true });
  });

  let created: { id: string };
  it('POST /users creates a user (201) with defaults', async () => {
    const res = await http().post('/users').send({ email: 'Ada@Example.com', name: 'Ada Lovelace' }).expect(201);
    expect(res.body).toMatchObject({ email: 'ada@example.com', name: 'Ada Lovelace', status: 'active' });
    expect(res.body.id).toMatch(UUID);
    expect(new Date(res.body.createdAt).getTime()).not.toBeNaN();
    created = res.body;
  });

  it('POST /users with a duplicate email is a sanitized 409', async () => {
    logs.clear();
    const res = await http().post('/users').send({ email: 'ada@example.com', name: 'Someone Else' }).expect(409);
    expect(res.body).toEqual({ statusCode: 409, message: expect.any(String), error: 'Conflict', code: 'DB_UNIQUE_VIOLATION', sqlstate: '23505' });
    expectSanitized(res.body, logs, ['ada@example.com', 'Someone Else']);
    expect(logs.text()).toContain('23505');
  });

  it.each([
    [{ name: 'No Email' }],
    [{ email: 'not-an-email', name: 'x' }],
    [{ email: 'a@b.io', name: '' }],
    [{ email: 'a@b.io', name: 'x'.repeat(201) }],
  ])('POST /users with missing/invalid fields is a 400 (%j)', async (body) => {
    const res = await http().post('/users').send(body).expect(400);
    expect(res.body).toMatchObject({ statusCode: 400, error: 'Bad Request' });
    expect(JSON.stringify(res.body)).not.toContain('not-an-email');
  });

  it('GET /users pages with a keyset cursor: every active user once, in id order; default status active, page sizes bounded', async () => {
    const db = app.get(DatabaseService);
    await db.execute(sql`INSERT INTO users (email, name) SELECT 'page-' || g || '@example.com', 'Page ' || g FROM generate_series(1, 120) g`);
    const expected = await db.fetch<{ id: string }>(sql`SELECT id FROM users WHERE status = 'active' ORDER BY id`);
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const res: { body: { items: Array<{ id: string; status: string }>; next: string | null } } = await http()
        .get(`/users?status=active&limit=50${after ? `&after=${after}` : ''}`)
        .expect(200);
      expect(res.body.items.length).toBeLessThanOrEqual(50);
      expect(res.body.items.every((u) => u.status === 'active')).toBe(true);
      seen.push(...res.body.items.map((u) => u.id));
      after = res.body.next;
    } while (after !== null);
    expect(seen).toEqual(expected.map((r) => r.id));
    expect(seen).toContain(created.id);
    const first = (await http().get('/users').expect(200)).body;
    expect(first.items).toHaveLength(50); // the default page size
    expect(first.next).toBe(first.items[49].id);
    expect((await http().get('/users?status=inactive').expect(200)).body).toEqual({ items: [], next: null });
    for (const bad of ['status=gone', 'limit=201', 'limit=0', 'after=not-a-uuid']) await http().get(`/users?${bad}`).expect(400);
  });

  it('GET /users/export streams every user with the status as NDJSON', async () => {
    const res = await http().get('/users/export?status=active').buffer(true).parse((response, done) => {
      let text = '';
      response.on('data', (chunk: Buffer) => (text += chunk.toString()));
      response.on('end', () => done(null, text));
    });
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = (res.body as string).trimEnd().split('\n').map((line) => JSON.parse(line) as { id: string; status: string });
    const active = await app.get(DatabaseService).fetchval<number>(sql`SELECT count(*)::int FROM users WHERE status = 'active'`);
    expect(lines).toHaveLength(active);
    expect(lines.every((u) => u.status === 'active')).toBe(true);
    expect(lines.map((u) => u.id)).toEqual([...lines.map((u) => u.id)].sort());
    expect((await http().get('/users/export?status=inactive').expect(200)).text).toBe('');
  });

  it('an export the client abandons mid-stream releases its connection', async () => {
    const db = app.get(DatabaseService);
    await db.execute(sql`INSERT INTO users (email, name, status) SELECT 'bulk-' || g || '@example.com', 'Bulk', 'inactive' FROM generate_series(1, 20000) g`);
    const server = app.getHttpServer().listen(0);
    try {
      const { port } = server.address() as AddressInfo;
      await new Promise<void>((resolve, reject) => {
        get({ host: '127.0.0.1', port, path: '/users/export?status=inactive' }, (response) => {
          response.once('data', () => {
            response.destroy(); // the client goes away after the first chunk
            resolve();
          });
        }).on('error', reject);
      });
      for (const deadline = performance.now() + 5000; db.stats().inFlight > 0 && performance.now() < deadline; ) await sleep(20);
      expect(db.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
      expect(db.stats().total - db.stats().idle).toBe(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('GET /users/:id: 200, 404 when absent, 400 when not a UUID', async () => {
    expect((await http().get(`/users/${created.id}`).expect(200)).body).toMatchObject({ id: created.id });
    await http().get('/users/00000000-0000-4000-8000-000000000000').expect(404);
    await http().get("/users/1' OR '1'='1").expect(400);
  });

  it('PATCH /users/:id/status: 200 with the updated user, 404 when absent, 400 for an unknown status', async () => {
    const res = await http().patch(`/users/${created.id}/status`).send({ status: 'suspended' }).expect(200);
    expect(res.body).toMatchObject({ id: created.id, status: 'suspended' });
    await http().patch('/users/00000000-0000-4000-8000-000000000000/status').send({ status: 'active' }).expect(404);
    await http().patch(`/users/${created.id}/status`).send({ status: 'deleted' }).expect(400);
  });

  it('a statement stuck behind a lock is a sanitized 503', async () => {
    const admin = await scratch.cluster.superuserClient(scratch.cluster.facts.database);
    try {
      await admin.query('BEGIN');
      await admin.query('LOCK TABLE users IN ACCESS EXCLUSIVE MODE');
      logs.clear();
      const res = await http().get('/users?status=active').expect(503);
      expect(res.body).toMatchObject({ statusCode: 503, code: expect.stringMatching(/^DB_(LOCK|STATEMENT)_TIMEOUT$/) });
      expectSanitized(res.body, logs, []);
      // The export reads its first row before answering: the same sanitized 503, not a broken 200.
      const exported = await http().get('/users/export?status=active').expect(503);
      expect(exported.body).toMatchObject({ statusCode: 503, code: expect.stringMatching(/^DB_(LOCK|STATEMENT)_TIMEOUT$/) });
    } finally {
      await admin.query('ROLLBACK');
      await admin.end();
    }
  });
});
