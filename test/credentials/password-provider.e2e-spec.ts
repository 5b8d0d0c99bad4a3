import { afterEach, describe, expect, it } from '@jest/globals';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { AuthenticationError, CredentialProviderError, type PasswordProviderTarget, type SecureDatabaseModuleOptions, sql } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { TcpFaultProxy } from '../support/tcp-fault-proxy.js';
import { type CredentialsApp, everythingShown, failedStartup, startCredentialsApp } from './credentials-app.js';
import { TestRole, newSecret } from './rotation-support.js';

const h = harness();

/** The `password` option as a function (IAM tokens): called for each new physical connection, bounded, sanitized. */
describe('password provider (the password option as a function) on a real server', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => undefined);
  });

  async function role(): Promise<TestRole> {
    const created = await new TestRole(h.tls).create();
    cleanup.push(() => created.drop());
    return created;
  }

  async function start(options: SecureDatabaseModuleOptions): Promise<CredentialsApp> {
    const app = await startCredentialsApp({ sslRootCert: h.caPem, appEnv: 'production', ...options });
    cleanup.push(() => app.close());
    return app;
  }

  it('a provider returning a new token each call (each valid only until the next) is called once per new physical connection', async () => {
    const iam = await role();
    const admin = await h.tls.superuserClient();
    cleanup.push(() => admin.end());
    // Like an IAM token service whose every token is good for one connection: the server reads the
    // role's verifier before it asks for the password, so each call hands out the current token and
    // at once makes the next one the only valid password. A connection given a stale token fails.
    const tokens: string[] = [];
    const targets: PasswordProviderTarget[] = [];
    let current = iam.password;
    const provider = async (target: PasswordProviderTarget) => {
      const token = current;
      current = newSecret();
      const { rows } = await admin.query<{ ddl: string }>('SELECT format($$ALTER ROLE %I PASSWORD %L$$, $1::text, $2::text) AS ddl', [iam.name, current]);
      await admin.query(rows[0].ddl);
      tokens.push(token);
      targets.push(target);
      return token;
    };
    const app = await start({ url: iam.url(), password: provider, poolMax: 4, poolIdleTimeoutMs: 60_000 });
    expect(tokens).toHaveLength(1); // the startup connection

    // Four connections held at once: the idle startup one and three new ones, one call (one token) each.
    const held: pg.PoolClient[] = [];
    for (let i = 0; i < 4; i++) held.push(await app.db.acquire());
    const pids = await Promise.all(held.map(async (c) => (await c.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid));
    for (const c of held) app.db.release(c);
    expect(new Set(pids).size).toBe(4);
    expect(tokens).toHaveLength(4);

    // Reused connections call nothing; after they are all terminated, the new one calls once.
    for (let i = 0; i < 20; i++) await app.service.fetchval(sql`SELECT ${i}::int`);
    expect(tokens).toHaveLength(4);
    await iam.terminateAll();
    await sleep(100);
    for (let i = 0; i < 5; i++) expect(await app.service.fetchval(sql`SELECT current_user`)).toBe(iam.name);

    const newConnections = app.db.stats().tlsAssertionsPassed;
    expect(newConnections).toBe(5);
    expect(tokens).toHaveLength(newConnections);
    expect(new Set(tokens).size).toBe(tokens.length);
    const { host, port, database } = h.tls.facts;
    expect(targets.every((t) => t.host === host && t.port === port && t.user === iam.name && t.database === database)).toBe(true);
    expect(app.logs.text()).toContain('password from the password option (a function), called for each new connection');
    for (const token of tokens) expect(app.logs.text()).not.toContain(token);
  }, 30_000);

  it('concurrent new connections: one call each, and the pool still opens them in parallel', async () => {
    const iam = await role();
    let calls = 0;
    const app = await start({
      url: iam.url(),
      password: async () => {
        calls++;
        await sleep(20); // a token endpoint's round trip
        return iam.password;
      },
      poolMax: 8,
    });
    const clients = await Promise.all(Array.from({ length: 8 }, () => app.db.acquire()));
    for (const c of clients) app.db.release(c);
    expect(app.db.stats().total).toBe(8);
    expect(calls).toBe(app.db.stats().tlsAssertionsPassed);
    expect(calls).toBe(8);
  }, 30_000);

  it('a host list: the provider is called again for each host tried (a token is signed for one host)', async () => {
    const iam = await role();
    const proxy = await TcpFaultProxy.start({ host: h.tls.facts.host, port: h.tls.facts.port });
    cleanup.push(() => proxy.close());
    const targets: PasswordProviderTarget[] = [];
    const { host, port, database } = h.tls.facts;
    // Two addresses of one primary, and a connection that wants a standby: both hosts authenticate, both are refused.
    const url = `postgresql://${iam.name}@${host}:${port},${host}:${proxy.port}/${database}?target_session_attrs=standby`;
    const { error } = await failedStartup({
      sslRootCert: h.caPem,
      appEnv: 'production',
      url,
      startupRetries: 0,
      password: (target) => {
        targets.push(target);
        return iam.password;
      },
    });
    expect(error.name).toBe('ServerRoleMismatchError');
    expect(targets.map((t) => t.port)).toEqual([port, proxy.port]);
  }, 30_000);

  it('a provider that throws: startup fails at once with a clear, sanitized error (production), the provider message only in development', async () => {
    const iam = await role();
    const leak = `token-endpoint-said-${newSecret()}`;
    const provider = async () => {
      throw new TypeError(`cannot sign: ${leak}`);
    };
    const { error, ms, logs } = await failedStartup({ sslRootCert: h.caPem, appEnv: 'production', url: iam.url(), password: provider, connectTimeoutMs: 3000 });
    expect(error).toBeInstanceOf(CredentialProviderError);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect(error.message).toBe('the password provider (the password option, a function) threw an exception (TypeError)');
    expect(ms).toBeLessThan(2000); // not retried (startupRetries applies to transient errors only)
    process.stdout.write(`[credentials] throwing provider: ${JSON.stringify({ startupFailedAfterMs: Math.round(ms) })}\n`);
    expect(everythingShown(error, logs)).not.toContain(leak);
    expect(logs.text()).toContain('Database startup failed [DB_AUTHENTICATION_FAILED]: the password provider (the password option, a function) threw');

    const development = await failedStartup({ sslRootCert: h.caPem, appEnv: 'development', url: iam.url(), password: provider });
    expect(development.error.message).toContain(leak);
  }, 30_000);

  it('a provider that hangs: startup fails within the connect timeout, saying so', async () => {
    const iam = await role();
    const connectTimeoutMs = 1000;
    const { error, ms } = await failedStartup({
      sslRootCert: h.caPem,
      appEnv: 'production',
      url: iam.url(),
      password: () => new Promise<string>(() => undefined),
      connectTimeoutMs,
      startupRetries: 3,
    });
    expect(error).toBeInstanceOf(CredentialProviderError);
    expect(error.message).toBe('the password provider (the password option, a function) did not answer within the connect timeout (DATABASE_CONNECT_TIMEOUT_MS, 1000 ms)');
    expect(ms).toBeGreaterThanOrEqual(connectTimeoutMs - 50);
    expect(ms).toBeLessThan(connectTimeoutMs + 1000);
    process.stdout.write(`[credentials] hanging provider: ${JSON.stringify({ connectTimeoutMs, startupFailedAfterMs: Math.round(ms) })}\n`);
  }, 30_000);

  it('a provider that returns no password: refused before anything is sent', async () => {
    const iam = await role();
    for (const [value, said] of [
      [undefined, 'undefined'],
      ['', 'an empty string'],
      [42, 'number'],
    ] as const) {
      const { error } = await failedStartup({ sslRootCert: h.caPem, appEnv: 'production', url: iam.url(), password: (() => value) as () => string });
      expect(error).toBeInstanceOf(CredentialProviderError);
      expect(error.message).toBe(`the password provider (the password option, a function) returned ${said} instead of the password (a non-empty string)`);
    }
  }, 30_000);

  it('a provider failing after startup: the query that needed a new connection fails with the same error; the next connection recovers', async () => {
    const iam = await role();
    let failing = false;
    const app = await start({
      url: iam.url(),
      password: async () => {
        if (failing) throw new Error('token service down');
        return iam.password;
      },
      poolMax: 1,
    });
    failing = true;
    await iam.terminateAll();
    await sleep(100);
    const error = await app.service.fetchval(sql`SELECT 1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialProviderError);
    expect((error as CredentialProviderError).code).toBe('DB_AUTHENTICATION_FAILED');
    failing = false;
    expect(await app.service.fetchval(sql`SELECT 2`)).toBe(2);
  }, 30_000);
});
