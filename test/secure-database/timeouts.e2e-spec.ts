import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { once } from 'node:events';
import {
  AuthenticationError,
  ConnectTimeoutError,
  ConnectionError,
  LockTimeoutError,
  PoolExhaustedError,
  StatementTimeoutError,
} from '../../src/index.js';
import { freePort } from '../../src/local-postgres/index.js';
import { harness } from '../support/harness.js';
import { type DatabaseApp, startDatabaseApp, startupError } from '../support/database-app.js';
import { startSilentListener } from '../support/tls-terminating-proxy.js';

const h = harness();

async function activity(applicationName: string) {
  return h.tls.withSuperuser(async (admin) => (await admin.query('SELECT state, query FROM pg_stat_activity WHERE application_name = $1', [applicationName])).rows);
}

describe('startup: connect timeout and bounded retries', () => {
  let silent: Awaited<ReturnType<typeof startSilentListener>>;
  beforeAll(async () => {
    silent = await startSilentListener();
  });
  afterAll(() => silent.close());

  it('fires within the connect timeout against a listener that accepts TCP and never answers', async () => {
    const started = Date.now();
    const error = await startupError({ url: `postgresql://app:pw@127.0.0.1:${silent.port}/app`, connectTimeoutMs: 800, startupRetries: 0 });
    const elapsed = Date.now() - started;
    expect(error).toBeInstanceOf(ConnectTimeoutError);
    expect(elapsed).toBeGreaterThanOrEqual(750);
    expect(elapsed).toBeLessThan(2500);
  });

  it('retries transient failures (connection refused) a bounded number of times, then fails', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    try {
      const port = await freePort();
      const error = await startupError({ url: `postgresql://app:pw@127.0.0.1:${port}/app`, startupRetries: 2 });
      expect(error).toBeInstanceOf(ConnectionError);
      expect(error.message).toBe('connection refused');
      const attempts = warn.mock.calls.filter((c) => /Database not reachable yet \(DB_CONNECTION_FAILED\); attempt \d of 3/.test(String(c[0])));
      expect(attempts).toHaveLength(2);
    } finally {
      warn.mockRestore();
    }
  });

  it('never retries bad credentials, and never echoes the password', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    try {
      const wrong = 'Wr0ng-Secret-Pass';
      const error = await startupError({ url: h.tls.url({}, { password: wrong }), sslRootCert: h.caPem, startupRetries: 3 });
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toBe('authentication failed (check the user and password in DATABASE_URL) (SQLSTATE 28P01)');
      expect(warn.mock.calls.filter((c) => /attempt/.test(String(c[0])))).toHaveLength(0);
      expect(JSON.stringify({ message: error.message, stack: error.stack })).not.toContain(wrong);
    } finally {
      warn.mockRestore();
    }
  });
});

describe('server-enforced timeouts', () => {
  const applicationName = `timeouts-${process.pid}`;
  let started: DatabaseApp;
  beforeAll(async () => {
    started = await startDatabaseApp({
      url: h.tls.url(),
      sslRootCert: h.caPem,
      applicationName,
      statementTimeoutMs: 400,
      lockTimeoutMs: 300,
      idleInTransactionTimeoutMs: 500,
      poolMax: 2,
      acquireTimeoutMs: 300,
    });
  });
  afterAll(() => started.close());

  it('statement_timeout cancels pg_sleep on the server (57014) and the backend is idle afterwards', async () => {
    const error = await started.db.withClient((c) => c.query('SELECT pg_sleep(5)')).catch((e) => started.db.mapError(e));
    expect(error).toBeInstanceOf(StatementTimeoutError);
    expect((error as StatementTimeoutError).sqlstate).toBe('57014');
    const rows = await activity(applicationName);
    expect(rows.filter((r) => r.state === 'active')).toEqual([]);
    expect(rows.some((r) => String(r.query).includes('pg_sleep'))).toBe(true); // the same backend, now idle
  });

  it('lock_timeout gives up on a held lock (55P03)', async () => {
    const table = `locked_${process.pid}`;
    await h.tls.withSuperuser(async (admin) => {
      await admin.query(`CREATE TABLE ${table} (id int)`);
      await admin.query(`GRANT ALL ON ${table} TO ${h.tls.facts.user}`);
      await admin.query('BEGIN');
      await admin.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`);
      try {
        const error = await started.db.withClient((c) => c.query(`SELECT * FROM ${table}`)).catch((e) => started.db.mapError(e));
        expect(error).toBeInstanceOf(LockTimeoutError);
      } finally {
        await admin.query('ROLLBACK');
        await admin.query(`DROP TABLE ${table}`);
      }
    }, h.tls.facts.database);
  });

  it('idle_in_transaction_session_timeout ends a forgotten transaction; the process lives and the pool heals', async () => {
    const client = await started.db.acquire();
    const errored = once(client, 'error');
    await client.query('BEGIN');
    const [event] = await errored; // the server ends the session after 500 ms idle in the transaction
    expect(event).toMatchObject({ code: '25P03', severity: 'FATAL' });
    const error = await client.query('SELECT 1').then(() => undefined, (e: unknown) => started.db.mapError(e));
    expect(error).toBeInstanceOf(ConnectionError);
    const total = started.db.stats().total;
    started.db.release(client);
    expect(started.db.stats().total).toBe(total - 1); // destroyed, not pooled
    const { rows } = await started.pool.query('SELECT 1 AS one');
    expect(rows[0].one).toBe(1);
  });

  it('the acquire timeout fails fast when every connection is busy', async () => {
    const held = await Promise.all([started.db.acquire(), started.db.acquire()]);
    try {
      const t0 = Date.now();
      await expect(started.db.acquire()).rejects.toBeInstanceOf(PoolExhaustedError);
      expect(Date.now() - t0).toBeLessThan(1500);
    } finally {
      for (const c of held) started.db.release(c);
    }
    expect(started.db.stats()).toMatchObject({ waiting: 0, inFlight: 0 });
  });
});
