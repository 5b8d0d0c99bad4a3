import { afterEach, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { AuthenticationError, sql } from '../../src/index.js';
import { reportFigure } from '../resilience/figures.js';
import { harness } from '../support/harness.js';
import { type CredentialsApp, everythingShown, startCredentialsApp } from './credentials-app.js';
import { SteadyLoad, TestRole, newSecret } from './rotation-support.js';

const h = harness();

/** Rotation without restart: DATABASE_PASSWORD_FILE and DATABASE_URL_FILE are read again for new connections when they change. */
describe('password rotation (DATABASE_PASSWORD_FILE, DATABASE_URL_FILE) on a real server', () => {
  const cleanup: Array<() => Promise<unknown>> = [];
  afterEach(async () => {
    for (const step of cleanup.splice(0).reverse()) await step().catch(() => undefined);
  });

  async function setUp(passwordFileText?: (password: string) => string) {
    const dir = await mkdtemp(join(tmpdir(), 'rotation-'));
    cleanup.push(() => rm(dir, { recursive: true, force: true }));
    const role = await new TestRole(h.tls).create();
    cleanup.push(() => role.drop());
    const file = join(dir, 'password');
    await writeFile(file, (passwordFileText ?? ((p) => `${p}\n`))(role.password), { mode: 0o600 });
    return { dir, role, file };
  }

  async function start(options: Parameters<typeof startCredentialsApp>[0]): Promise<CredentialsApp> {
    const app = await startCredentialsApp({ sslRootCert: h.caPem, appEnv: 'production', ...options });
    cleanup.push(() => app.close());
    return app;
  }

  it('under steady load: ALTER ROLE … PASSWORD, the file rewritten, old connections terminated; only requests in flight on them fail', async () => {
    const POOL = 4;
    const { role, file } = await setUp();
    const app = await start({ url: role.url(), passwordFile: file, poolMax: POOL, poolIdleTimeoutMs: 60_000 });
    const oldPassword = role.password;
    const load = new SteadyLoad(app.service, 2 * POOL).start();
    try {
      await sleep(400);
      const oldBackends = await role.backends();
      expect(oldBackends).toHaveLength(POOL);

      // 1. The server's password changes: open connections are not asked again and keep serving.
      const altered = performance.now();
      await role.setPassword(newSecret());
      await sleep(400);
      expect(load.failures(0, performance.now())).toEqual([]);
      expect(load.succeeded(altered)).toBeGreaterThan(20);

      // 2. The secret file is rewritten in place (as an editor or `echo >` would), then the old connections are terminated.
      await writeFile(file, `${role.password}\n`);
      await sleep(200);
      const stats = app.db.stats();
      const busyAtTermination = stats.total - stats.idle;
      const terminatedAt = performance.now();
      const { terminated, active } = await role.terminateAll();
      const terminationDone = performance.now();
      expect(terminated).toBe(POOL);
      await sleep(1000);
      const outcomes = await load.stop();

      // Only requests in flight on the terminated connections failed, and only as terminated connections.
      const failed = load.failures();
      expect(failed.every((o) => o.code === 'DB_CONNECTION_FAILED')).toBe(true);
      expect(failed.filter((o) => o.code === 'DB_AUTHENTICATION_FAILED')).toEqual([]);
      // In flight: started before the termination ended, still running when it began. (Reads share busy
      // connections by default, so several requests may be in flight on each terminated connection, and a
      // worker whose request failed may send its next one to a connection still being terminated.)
      expect(failed.length).toBeGreaterThan(0);
      expect(failed.every((o) => o.startedAt < terminationDone && o.endedAt > terminatedAt)).toBe(true);
      expect(load.succeeded(terminationDone)).toBeGreaterThan(50);

      // Every connection now is a new one, opened with the new password after the termination.
      const newBackends = await role.backends();
      expect(newBackends.length).toBeGreaterThan(0);
      expect(newBackends.filter((b) => oldBackends.some((o) => o.pid === b.pid))).toEqual([]);
      expect(app.db.stats().tlsAssertionsPassed).toBeGreaterThanOrEqual(POOL + 1);
      expect(app.logs.text()).toContain('DATABASE_PASSWORD_FILE changed: new connections use it');
      for (const secret of [oldPassword, role.password]) expect(app.logs.text()).not.toContain(secret);

      // Kept by `npm run resilience` (test/resilience/results/): the README's rotation figures come from there.
      reportFigure('password rotation under load', {
        requests: outcomes.length,
        failed: failed.length,
        failedCodes: [...new Set(failed.map((o) => `${o.code}/${o.sqlstate ?? '-'}`))],
        terminatedConnections: terminated,
        busyOnClientAtTermination: busyAtTermination,
        activeOnServerAtTermination: active,
        terminationMs: Math.round(terminationDone - terminatedAt),
        servedAfterTermination: load.succeeded(terminationDone),
      });
    } finally {
      await load.stop();
    }
  }, 30_000);

  it('without any termination: connections retire at maxLifetimeSeconds and come back with the new password; not one request fails', async () => {
    const { role, file } = await setUp();
    const app = await start({ url: role.url(), passwordFile: file, poolMax: 3, maxLifetimeSeconds: 1, poolIdleTimeoutMs: 60_000 });
    const load = new SteadyLoad(app.service, 6).start();
    try {
      await sleep(300);
      const before = await role.backends();
      await role.setPassword(newSecret());
      // A file replaced by rename (Kubernetes swaps a symlink; Vault agent renames): another inode.
      await writeFile(`${file}.new`, role.password, { mode: 0o600 });
      const { rename } = await import('node:fs/promises');
      await rename(`${file}.new`, file);
      const rotated = performance.now();
      await sleep(2500);
      await load.stop();
      expect(load.failures()).toEqual([]);
      const after = await role.backends();
      expect(after.filter((b) => before.some((o) => o.pid === b.pid))).toEqual([]);
      expect(load.succeeded(rotated + 1500)).toBeGreaterThan(50);
    } finally {
      await load.stop();
    }
  }, 30_000);

  it('DATABASE_URL_FILE: a new user and password (Vault dynamic credentials) reach new connections; other changes are warned about, not applied', async () => {
    const { dir, role } = await setUp();
    const next = await new TestRole(h.tls).create();
    cleanup.push(() => next.drop());
    const urlFile = join(dir, 'url');
    await writeFile(urlFile, role.url({}, true), { mode: 0o600 });
    const app = await start({ urlFile, poolMax: 2 });
    expect(await app.service.fetchval(sql`SELECT current_user`)).toBe(role.name);

    await writeFile(urlFile, next.url({ application_name: 'other-name' }, true));
    await role.terminateAll();
    expect(await app.service.fetchval(sql`SELECT current_user`)).toBe(next.name);
    expect(await app.service.fetchval(sql`SELECT current_setting('application_name')`)).not.toBe('other-name');
    const logs = app.logs.text();
    expect(logs).toContain('DATABASE_URL_FILE changed: new connections use it');
    expect(logs).toContain('DATABASE_URL_FILE now names another host, port, database or parameters: new connections take only its user and password');
    for (const secret of [role.password, next.password]) expect(logs).not.toContain(secret);
  }, 30_000);

  it('a rewrite fs.stat cannot see (same size, same mtime): the refused password (28P01) makes the module read the file again and retry once', async () => {
    const { role, file } = await setUp((p) => p);
    const fixedTime = new Date('2026-01-01T00:00:00Z');
    await utimes(file, fixedTime, fixedTime);
    const app = await start({ url: role.url(), passwordFile: file, poolMax: 1 });
    await role.setPassword(newSecret());
    await writeFile(file, role.password); // in place: same inode, same size (24 characters)
    await utimes(file, fixedTime, fixedTime); // and the old modification time
    await role.terminateAll();

    expect(await app.service.fetchval(sql`SELECT current_user`)).toBe(role.name);
    expect(app.logs.text()).toContain('The server refused the password a new connection used, and the secret file now holds another one: trying once more');
    expect(app.db.stats()).toMatchObject({ tlsAssertionsPassed: 2, tlsAssertionsFailed: 0 });
  }, 30_000);

  it('a file that still holds a refused password: one re-read, then a clear error naming DATABASE_PASSWORD_FILE', async () => {
    const { role, file } = await setUp();
    const app = await start({ url: role.url(), passwordFile: file, poolMax: 1 });
    await role.setPassword(newSecret());
    await role.terminateAll();
    const error = await app.service.fetchval(sql`SELECT 1`).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(AuthenticationError);
    expect((error as Error).message).toBe('authentication failed: the server refused the password from DATABASE_PASSWORD_FILE (SQLSTATE 28P01)');
    expect(everythingShown(error, app.logs)).not.toContain(role.password);
    expect(app.logs.text()).not.toContain('trying once more');
  }, 30_000);

  it('a file caught empty or gone during a rotation: new connections keep the last good password, warned once', async () => {
    const { role, file } = await setUp();
    const app = await start({ url: role.url(), passwordFile: file, poolMax: 1 });
    await writeFile(file, '');
    await role.terminateAll();
    expect(await app.service.fetchval(sql`SELECT 1`)).toBe(1);
    await role.terminateAll();
    expect(await app.service.fetchval(sql`SELECT 2`)).toBe(2);
    await rm(file);
    await role.terminateAll();
    expect(await app.service.fetchval(sql`SELECT 3`)).toBe(3);
    const warnings = app.logs.lines.filter((l) => l.startsWith('[warn]') && l.includes('DATABASE_PASSWORD_FILE'));
    expect(warnings).toEqual([
      expect.stringContaining('DATABASE_PASSWORD_FILE names an empty file: new connections keep using the previous value'),
      expect.stringContaining('DATABASE_PASSWORD_FILE cannot be read (ENOENT): new connections keep using the previous value'),
    ]);
  }, 30_000);
});
