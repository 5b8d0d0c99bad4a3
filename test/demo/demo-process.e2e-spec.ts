import { describe, expect, it } from '@jest/globals';
import { existsSync } from 'node:fs';
import { freePort } from '../../src/local-postgres/index.js';
import { spawnDemo } from '../support/demo-process.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { startSilentListener } from '../support/tls-terminating-proxy.js';

const h = harness();

describe('the built demo as a process (node dist/main.js)', () => {
  it('production against a server without TLS: exit 1 with "SSL required but not active", no password', async () => {
    const demo = spawnDemo({ APP_ENV: 'production', DATABASE_URL: h.plain.url(), DATABASE_SSL_ROOT_CERT: h.caPath }, await freePort());
    const { code } = await demo.exited;
    expect(code).toBe(1);
    expect(demo.output()).toContain('SSL required but not active');
    expect(demo.output()).toContain('DB_SSL_NOT_ACTIVE');
    expect(demo.output()).not.toContain(h.plain.facts.password);
  });

  it('production with an unreachable database: exit 1 within connect timeout × attempts, naming cause and fix', async () => {
    const silent = await startSilentListener();
    try {
      const started = Date.now();
      const demo = spawnDemo(
        {
          APP_ENV: 'production',
          DATABASE_URL: `postgresql://app:Hunter2-Secret@127.0.0.1:${silent.port}/app`,
          DATABASE_CONNECT_TIMEOUT_MS: '500',
          DATABASE_STARTUP_RETRIES: '1',
        },
        await freePort(),
      );
      const { code } = await demo.exited;
      expect(code).toBe(1);
      expect(Date.now() - started).toBeLessThan(2 * 500 + 1000 + 3000); // two attempts, backoff, node startup
      expect(demo.output()).toMatch(/Database startup failed \[DB_CONNECT_TIMEOUT\].*raise DATABASE_CONNECT_TIMEOUT_MS/);
      expect(demo.output()).not.toContain('Hunter2-Secret');
    } finally {
      await silent.close();
    }
  });

  it('production over verified TLS: serves /health, then SIGTERM drains and exits 0', async () => {
    const scratch = await scratchDatabase(h.tls);
    try {
      const demo = spawnDemo(
        { APP_ENV: 'production', DATABASE_URL: scratch.cluster.url({}, { host: 'localhost' }), DATABASE_SSL_ROOT_CERT: h.caPem, DATABASE_SHUTDOWN_TIMEOUT_MS: '3000' },
        await freePort(),
      );
      await demo.waitFor(/Listening on/);
      const health = await (await fetch(demo.url('/health'))).json();
      expect(health.info.database).toMatchObject({ status: 'up', tls: true, serverIdentityVerified: true });
      expect(demo.output()).toMatch(/"level":"log"/); // JSON logs in production
      const t0 = Date.now();
      demo.child.kill('SIGTERM');
      expect(await demo.exited).toEqual({ code: 0, signal: null });
      expect(Date.now() - t0).toBeLessThan(3000 + 1000);
      expect(demo.output()).not.toContain(scratch.cluster.facts.password);
    } finally {
      await scratch.drop();
    }
  });

  it.each<Record<string, string>>([{ K_SERVICE: 'api' }, { RAILWAY_ENVIRONMENT: 'production', APP_ENV: 'development' }])(
    'deployed (%j) without DATABASE_URL: exit 1 with the missing-secret error, never an embedded database',
    async (env) => {
      const demo = spawnDemo(env, await freePort());
      const { code } = await demo.exited;
      expect(code).toBe(1);
      expect(demo.output()).toContain('DATABASE_URL environment variable must be set');
      expect(demo.output()).toMatch(/looks deployed .*no embedded database is started/);
      expect(demo.output()).not.toContain('started an embedded PostgreSQL');
    },
  );

  it('with nothing set: starts the embedded PostgreSQL, verifies TLS, and Ctrl-C removes it', async () => {
    const demo = spawnDemo({}, await freePort());
    await demo.waitFor(/Listening on/, 30_000);
    const health = await (await fetch(demo.url('/health'))).json();
    expect(health.info.database).toMatchObject({ status: 'up', tls: true, sslmode: 'verify-full', serverIdentityVerified: true });
    const dir = /CA (\/\S+)\/local-postgres-ca\.crt/.exec(demo.output())?.[1];
    expect(dir && existsSync(dir)).toBe(true);
    demo.child.kill('SIGINT');
    expect((await demo.exited).code).toBe(0);
    expect(existsSync(dir!)).toBe(false);
  });
});
