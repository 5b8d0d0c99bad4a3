import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import {
  DatabaseService,
  ReadOnlyTransactionError,
  ServerRoleMismatchError,
  databaseErrorStatus,
  getDatabaseServiceToken,
  sql,
} from '../../src/index.js';
import { freePort, waitForReplay } from '../../src/local-postgres/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { createHealthApp } from '../health/health-app.js';
import { startupError } from '../support/database-app.js';
import { spawnDemo } from '../support/demo-process.js';
import { type ReplicationPair, startReplicationPair } from '../support/replication-pair.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(probe: () => Promise<T>, accept: (value: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value) || Date.now() > deadline) return value;
    await sleep(25);
  }
}

async function setReplay(pair: ReplicationPair, paused: boolean): Promise<void> {
  await pair.standby.withSuperuser((admin) => admin.query(paused ? 'SELECT pg_wal_replay_pause()' : 'SELECT pg_wal_replay_resume()'));
}

describe('a read replica: a readOnly connection to a streaming standby', () => {
  let pair: ReplicationPair;
  let app: INestApplication;
  let primary: DatabaseService;
  let replica: DatabaseService;
  let replicaPool: DatabasePool;

  beforeAll(async () => {
    pair = await startReplicationPair();
    await pair.primary.withSuperuser(
      (admin) => admin.query(`CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL); GRANT ALL ON notes TO ${pair.primary.facts.user}`),
      pair.primary.facts.database,
    );
    ({ app } = await createHealthApp([
      { url: pair.primary.url(), sslRootCert: pair.caPem, appEnv: 'production' },
      { name: 'replica', url: pair.standby.url(), sslRootCert: pair.caPem, readOnly: true, appEnv: 'production' },
    ]));
    primary = app.get(DatabaseService);
    replica = app.get<DatabaseService>(getDatabaseServiceToken('replica'));
    replicaPool = app.get<DatabasePool>(getDatabasePoolToken('replica'));
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await pair?.stop();
  });

  it('is asserted at every new connection to be a standby, verified against its own certificate name', () => {
    expect(replicaPool.lastServer).toMatchObject({ host: '127.0.0.2', inRecovery: true, readOnly: true });
    expect(replicaPool.lastTls).toMatchObject({ ssl: true, verified: true, serverLeg: 'direct' });
  });

  it('refuses startup when the readOnly URL points at a writable primary', async () => {
    const error = await startupError({ url: pair.primary.url(), sslRootCert: pair.caPem, readOnly: true, startupRetries: 0 });
    expect(error).toBeInstanceOf(ServerRoleMismatchError);
    expect(error.message).toBe('no server in DATABASE_URL is a standby or a read-only session (readOnly connection): 1 reached but of another kind');
  });

  it('reads see rows written on the primary once they are replayed', async () => {
    await primary.execute(sql`INSERT INTO notes VALUES (${1}, ${'first'})`);
    await waitForReplay(pair.primary, pair.standby);
    expect(await replica.fetch(sql`SELECT id, body FROM notes ORDER BY id`)).toEqual([{ id: 1, body: 'first' }]);
  });

  it('refuses writes with a sanitized DB_READ_ONLY (25006, HTTP 503), and keeps its connection', async () => {
    const passed = replicaPool.stats().tlsAssertionsPassed;
    const error = await replica.execute(sql`INSERT INTO notes VALUES (${2}, ${'secret body'})`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ReadOnlyTransactionError);
    expect(error).toMatchObject({ code: 'DB_READ_ONLY', sqlstate: '25006' });
    expect((error as Error).message).toBe('the server accepts no writes (read-only transaction, standby or demoted primary) (SQLSTATE 25006)');
    expect(JSON.stringify({ m: (error as Error).message, c: (error as Error).cause })).not.toMatch(/secret body|notes/);
    expect(databaseErrorStatus(error as ReadOnlyTransactionError)).toEqual({ status: 503, message: 'The database is temporarily unavailable', retryAfterSeconds: 1 });
    expect(await replica.fetchval('SELECT 1')).toBe(1);
    expect(replicaPool.stats().tlsAssertionsPassed).toBe(passed); // a replica refusing a write is no reason to reconnect
  });

  it('health reports each connection by name, with the role and the replication lag', async () => {
    const database = await request(app.getHttpServer()).get('/health/ready');
    expect(database.body.info.database).toMatchObject({ status: 'up', role: 'primary', tls: true, serverIdentityVerified: true });
    expect(database.body.info.database).not.toHaveProperty('replicationLagSeconds');
    const standby = await eventually(
      async () => (await request(app.getHttpServer()).get('/health/ready?connection=replica')).body.info.database,
      (check) => check.replicationLagSeconds === 0, // once the last WAL the primary sent is replayed
    );
    expect(standby).toMatchObject({ status: 'up', role: 'standby', replicationLagSeconds: 0 });
  });

  it('replication lag is reported while the standby is behind, and returns to 0 once it has caught up', async () => {
    const lag = async () => (await request(app.getHttpServer()).get('/health/ready?connection=replica')).body.info.database.replicationLagSeconds as number;
    await setReplay(pair, true);
    try {
      await sleep(1100); // the last replayed transaction is at least this old
      await primary.execute(sql`INSERT INTO notes VALUES (${3}, ${'while paused'})`);
      expect(await eventually(lag, (seconds) => seconds >= 1)).toBeGreaterThanOrEqual(1);
      expect(await replica.fetchval<number>('SELECT count(*)::int FROM notes WHERE id = 3')).toBe(0);
    } finally {
      await setReplay(pair, false);
    }
    expect(await eventually(lag, (seconds) => seconds === 0)).toBe(0);
    expect(await replica.fetchval<number>('SELECT count(*)::int FROM notes WHERE id = 3')).toBe(1);
  });

  it('the replica going down leaves the primary path healthy while health reports the replica down', async () => {
    await pair.standby.stop('fast');
    try {
      const down = await request(app.getHttpServer()).get('/health/ready?connection=replica');
      expect(down.status).toBe(503);
      expect(down.body.error.database).toMatchObject({ status: 'down', message: 'connection refused' });
      const up = await request(app.getHttpServer()).get('/health/ready');
      expect(up.status).toBe(200);
      expect(await primary.execute(sql`INSERT INTO notes VALUES (${4}, ${'replica down'})`)).toBe(1);
    } finally {
      await pair.standby.start();
    }
    await waitForReplay(pair.primary, pair.standby);
    expect(await eventually(() => replica.fetchval<number>('SELECT count(*)::int FROM notes'), (n) => n === 3)).toBe(3);
  });
});

describe('the demo with DATABASE_REPLICA_URL', () => {
  let pair: ReplicationPair;

  beforeAll(async () => {
    pair = await startReplicationPair();
  }, 60_000);

  afterAll(() => pair?.stop());

  it('lists users from the replica (a row is missing while replay is paused) and reports both connections in /health', async () => {
    const demo = spawnDemo(
      { APP_ENV: 'test', DATABASE_URL: pair.primary.url(), DATABASE_REPLICA_URL: pair.standby.url(), DATABASE_SSL_ROOT_CERT: pair.ca.certPath },
      await freePort(),
    );
    try {
      await demo.waitFor(/Listening on/);
      expect(demo.output()).toMatch(/Connected to 127\.0\.0\.2:\d+\/app as app \(host 1 of 1, target_session_attrs=any, readOnly: standby, read-only\)/);
      const health = await fetch(demo.url('/health'));
      expect(health.status).toBe(200);
      const body = (await health.json()) as { info: Record<string, { status: string; role: string }> };
      expect(body.info).toMatchObject({ database: { status: 'up', role: 'primary' }, replica: { status: 'up', role: 'standby' } });

      const list = async () => ((await (await fetch(demo.url('/users?status=active'))).json()) as { items: Array<{ email: string }> }).items.map((u) => u.email);
      const create = (email: string) =>
        fetch(demo.url('/users'), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email, name: 'Ada' }) });
      await waitForReplay(pair.primary, pair.standby); // the users table the demo created
      await setReplay(pair, true);
      try {
        expect((await create('paused@example.com')).status).toBe(201);
        await sleep(300);
        expect(await list()).not.toContain('paused@example.com');
      } finally {
        await setReplay(pair, false);
      }
      expect(await eventually(list, (emails) => emails.includes('paused@example.com'))).toContain('paused@example.com');
    } finally {
      demo.child.kill('SIGTERM');
      await demo.exited;
    }
  });
});
