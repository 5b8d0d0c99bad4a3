import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { AuthenticationError } from '../../src/index.js';
import { type LocalPostgres, type LocalPostgresCluster, startLocalPostgres } from '../../src/local-postgres/index.js';
import { ChannelBindingError } from '../../src/secure-database/auth/channel-binding.js';
import { authenticationOf } from '../../src/secure-database/auth/observe-authentication.js';
import { readDatabaseEnv } from '../../src/secure-database/config/database.config.js';
import request from 'supertest';
import { createHealthApp } from '../health/health-app.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';
import { harness } from '../support/harness.js';
import { installServerCertificate } from './server-certificate.js';
import { runDoctorCli } from './doctor-process.js';

const TLS_HOSTS = ['localhost', '127.0.0.1'];
const quick = { startupRetries: 0, connectTimeoutMs: 5000 };

/**
 * Servers configured as the shared harness must never be: md5, cleartext-password and trust
 * authentication, a certificate expiring in 10 days, one expired in 2020, one signed with SHA-1, and one
 * accepting TLS 1.0/1.1. One startLocalPostgres call: one initdb, seven copies.
 */
describe('doctor and the module on clusters of their own', () => {
  let local: LocalPostgres;
  let ca: string;
  let c: Record<'md5' | 'password' | 'trust' | 'expiring' | 'expired' | 'legacy' | 'weak', LocalPostgresCluster>;
  const env = (cluster: LocalPostgresCluster, params: Record<string, string> = {}, extra: Record<string, string> = {}) => ({
    DATABASE_URL: cluster.url(params),
    DATABASE_SSL_ROOT_CERT: local.ca.certPath,
    ...extra,
  });

  beforeAll(async () => {
    // log_connections: the server logs which role authenticated, so a test can tell whether a password ever reached it.
    const logged = { log_connections: 'on' };
    local = await startLocalPostgres([
      { name: 'md5', tls: TLS_HOSTS, auth: 'md5', settings: { ...logged, password_encryption: "'md5'" } },
      { name: 'password', tls: TLS_HOSTS, auth: 'password', settings: logged },
      { name: 'trust', tls: TLS_HOSTS, auth: 'trust' },
      { name: 'expiring', tls: TLS_HOSTS, certificateDays: 10 },
      { name: 'expired', tls: TLS_HOSTS },
      { name: 'legacy', tls: TLS_HOSTS },
      { name: 'weak', tls: TLS_HOSTS },
    ]);
    c = local.clusters as typeof c;
    ca = await readFile(local.ca.certPath, 'utf8');
    await installServerCertificate(c.expired, local.ca, { startDate: '20200101000000Z', endDate: '20200201000000Z' });
    await installServerCertificate(c.weak, local.ca, { digest: 'sha1' });
    // A server that also accepts TLS 1.0/1.1 (OpenSSL 3 needs security level 0 for them).
    await c.legacy.withSuperuser(async (admin) => {
      await admin.query("ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'");
      await admin.query("ALTER SYSTEM SET ssl_ciphers = 'DEFAULT:@SECLEVEL=0'");
      await admin.query('SELECT pg_catalog.pg_reload_conf()');
    });
    for (let i = 0; ; i++) {
      const { rows } = await c.legacy.withSuperuser((admin) => admin.query('SHOW ssl_min_protocol_version'));
      if (rows[0].ssl_min_protocol_version === 'TLSv1') break;
      if (i > 50) throw new Error('the legacy cluster did not reload');
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }, 120_000);

  afterAll(() => local?.stop());

  describe('the doctor', () => {
    it('md5 authentication: exit 1 on authentication; password_encryption md5 warned', async () => {
      const run = await runDoctorCli(env(c.md5));
      expect(run.code).toBe(1);
      expect(run.check('authentication')).toMatchObject({ status: 'fail', evidence: expect.stringMatching(/^md5: /), fix: expect.stringMatching(/scram-sha-256/) });
      expect(run.check('password-encryption')).toMatchObject({ status: 'warn', evidence: expect.stringMatching(/^md5: /) });
      expect(run.check('channel-binding')).toMatchObject({ status: 'warn', evidence: 'not possible: the server did not use SCRAM (md5)' });
      expect(run.json?.summary).toMatch(/^FAIL: 1 check failed \(authentication\)/);
    });

    it('cleartext password and trust authentication: exit 1 on authentication', async () => {
      const password = await runDoctorCli(env(c.password));
      expect(password.code).toBe(1);
      expect(password.check('authentication').evidence).toMatch(/^password: the server asked for the password itself/);
      const trust = await runDoctorCli(env(c.trust));
      expect(trust.code).toBe(1);
      expect(trust.check('authentication').evidence).toMatch(/^none: the server asked for no credentials \(trust\)/);
    });

    it('channel binding required against md5: exit 1 on channel binding (refused while authenticating), the md5 request reported', async () => {
      const run = await runDoctorCli(env(c.md5, { channel_binding: 'require' }));
      expect(run.code).toBe(1);
      expect(run.check('channel-binding')).toMatchObject({ status: 'fail', evidence: 'refused by channel_binding=require: the server asked for md5 password authentication' });
      expect(run.check('connection')).toMatchObject({ status: 'fail', fix: 'see channel-binding, authentication' });
      expect(run.check('authentication').status).toBe('fail');
    });

    it('a certificate expiring in 10 days: warn, with the date; exit 0', async () => {
      const run = await runDoctorCli(env(c.expiring));
      expect(run.code).toBe(0);
      expect(run.check('certificate-expiry')).toMatchObject({
        status: 'warn',
        evidence: expect.stringMatching(/^server certificate CN=localhost expires in (9|10) days \(\d{4}-\d{2}-\d{2}\)$/),
        fix: expect.stringMatching(/^renew it before /),
      });
    });

    it('an expired certificate: verify-full cannot connect (exit 1 on certificate expiry); sslmode=require connects and fails it too', async () => {
      const verifying = await runDoctorCli(env(c.expired));
      expect(verifying.code).toBe(1);
      // The refused certificate, seen by a second handshake that does not refuse it: its date, not only the verdict.
      expect(verifying.check('certificate-expiry')).toMatchObject({ status: 'fail', evidence: 'server certificate CN=localhost expired on 2020-02-01' });
      expect(verifying.check('connection')).toMatchObject({ evidence: expect.stringMatching(/the server certificate has expired \[CERT_HAS_EXPIRED\]$/), fix: 'see certificate-expiry' });
      const unverified = await runDoctorCli({ DATABASE_URL: c.expired.url({ sslmode: 'require' }) });
      expect(unverified.code).toBe(1);
      expect(unverified.check('connection').status).toBe('pass');
      expect(unverified.check('certificate-expiry')).toMatchObject({ status: 'fail', evidence: 'server certificate CN=localhost expired on 2020-02-01' });
    });

    it('a certificate signed with SHA-1: verify-full refuses it (exit 1 on signatures); under sslmode=require the chain shows it', async () => {
      // Node refuses the chain with OpenSSL's UNSPECIFIED; a second handshake, not refusing, shows the certificate.
      const verifying = await runDoctorCli(env(c.weak));
      expect(verifying.code).toBe(1);
      expect(verifying.check('certificate-signatures')).toMatchObject({
        status: 'fail',
        evidence: expect.stringMatching(/^CN=localhost: ecdsa-with-SHA1, EC P-256 .*; signed with a broken hash: CN=localhost$/),
      });
      // A typed TLS verification failure (OpenSSL reports a SHA-1 chain as UNSPECIFIED); certificate-signatures names the hash.
      expect(verifying.check('server-identity')).toMatchObject({
        status: 'fail',
        evidence: expect.stringMatching(/^TLS verification failed: the server certificate failed verification .*; the certificate names /),
      });
      expect(verifying.check('connection').fix).toBe('see server-identity, certificate-signatures');
      const unverified = await runDoctorCli({ DATABASE_URL: c.weak.url({ sslmode: 'require' }) });
      expect(unverified.code).toBe(1);
      expect(unverified.check('connection').status).toBe('pass');
      expect(unverified.check('certificate-signatures')).toMatchObject({
        status: 'fail',
        evidence: 'CN=localhost: ecdsa-with-SHA1, EC P-256; signed with a broken hash: CN=localhost',
      });
    });

    it('a server that accepts TLS 1.0/1.1: warn on its TLS minimum, seen by a handshake the app role needs no privilege for', async () => {
      const run = await runDoctorCli(env(c.legacy));
      expect(run.code).toBe(0);
      expect(run.check('server-tls-minimum')).toMatchObject({
        status: 'warn',
        evidence: expect.stringMatching(/^ssl_min_protocol_version not visible to this role; a TLS 1\.0\/1\.1-only handshake was accepted \(TLSv1(\.1)?\)/),
      });
      expect(run.check('tls-protocol').status).toBe('pass'); // the app's own connection still negotiates TLS 1.3
    });
  });

  describe('channel_binding=require in the module', () => {
    const h = harness();

    it('against scram over TLS: starts, every connection authenticated with SCRAM-SHA-256-PLUS', async () => {
      const { db, close } = await startDatabaseApp({ url: h.tls.url({ channel_binding: 'require' }), sslRootCert: h.caPem, ...quick });
      try {
        expect(db.config.channelBinding).toBe('require');
        expect(await db.withClient(async (client) => authenticationOf(client)?.method)).toBe('scram-sha-256-plus');
      } finally {
        await close();
      }
    });

    it('DATABASE_CHANNEL_BINDING=require does the same from the environment, over a URL without the parameter', async () => {
      const options = readDatabaseEnv({ DATABASE_URL: h.tls.url(), DATABASE_SSL_ROOT_CERT: h.caPem, DATABASE_CHANNEL_BINDING: 'require' });
      const { db, close } = await startDatabaseApp({ ...options, ...quick });
      try {
        expect(await db.withClient(async (client) => authenticationOf(client)?.method)).toBe('scram-sha-256-plus');
      } finally {
        await close();
      }
      // And against md5 the same variable refuses, where the URL says nothing.
      const error = await startupError({ ...readDatabaseEnv({ DATABASE_URL: c.md5.url(), DATABASE_SSL_ROOT_CERT: ca, DATABASE_CHANNEL_BINDING: 'require' }), ...quick });
      expect(error).toBeInstanceOf(ChannelBindingError);
    });

    it.each([
      ['md5', 'the server asked for md5 password authentication'],
      ['password', 'the server asked for the password in cleartext'],
      ['trust', 'the server let the connection in without authenticating it'],
    ] as const)('against %s authentication: refused at startup with a clear error', async (name, reason) => {
      const error = await startupError({ url: c[name].url({ channel_binding: 'require' }), sslRootCert: ca, startupRetries: 3 });
      expect(error).toBeInstanceOf(ChannelBindingError);
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error).toMatchObject({ code: 'DB_AUTHENTICATION_FAILED' });
      expect(error.message).toContain(`channel binding required (channel_binding=require) but ${reason}`);
      expect(error.message).toMatch(/Fix: .*scram-sha-256/);
    });

    it('channel_binding=prefer against md5 still connects (libpq: use it when offered)', async () => {
      const { db, close } = await startDatabaseApp({ url: c.md5.url({ channel_binding: 'prefer' }), sslRootCert: ca, ...quick });
      try {
        expect(await db.withClient(async (client) => authenticationOf(client)?.method)).toBe('md5');
      } finally {
        await close();
      }
    });

    // The server logs the role of every connection that authenticated (log_connections). A role used
    // only for the refused attempt never appears: neither the password nor its md5 hash reached it. The
    // control, the same attempt without channel binding, shows the log does name a role that logs in.
    it.each(['password', 'md5'] as const)('under %s authentication the refused attempt sends the server nothing it could authenticate', async (name) => {
      const cluster = c[name];
      const [sent, kept] = ['cb_sent', 'cb_kept'].map((prefix) => `${prefix}_${randomBytes(4).toString('hex')}`);
      const password = randomBytes(12).toString('hex');
      await cluster.withSuperuser(async (admin) => {
        for (const role of [sent, kept]) await admin.query(`CREATE ROLE ${role} LOGIN PASSWORD '${password}'`); // generated names and password
      });
      const url = (role: string, params: Record<string, string>) => cluster.url(params, { user: role, password });
      const control = await startDatabaseApp({ url: url(sent, { channel_binding: 'disable' }), sslRootCert: ca, ...quick });
      await control.close();
      const error = await startupError({ url: url(kept, { channel_binding: 'require' }), sslRootCert: ca, ...quick });
      expect(error).toBeInstanceOf(ChannelBindingError);
      await new Promise((resolve) => setTimeout(resolve, 300));
      const log = await readFile(join(cluster.facts.dataDir, 'server.log'), 'utf8');
      expect(log).toMatch(new RegExp(`connection authorized: user=${sent}`));
      expect(log).not.toContain(kept);
    });
  });

  describe('certificate expiry in the module', () => {
    it('the startup log warns when the certificate expires within 30 days; the health check reports the days left', async () => {
      const { app, logs } = await createHealthApp([{ url: c.expiring.url(), sslRootCert: ca, ...quick }]);
      try {
        const health = await request(app.getHttpServer()).get('/health/ready');
        expect(health.body.info.database).toMatchObject({ status: 'up', certificateDaysLeft: 9 }); // 10 days from issue, less the seconds since
      } finally {
        await app.close();
      }
      expect(logs.text()).toMatch(/\[warn\] The server's TLS certificate \(CN=localhost\) expires in (9|10) days \(\d{4}-\d{2}-\d{2}T[\d:.]+Z\): renew it before then/);
    });

    it('and says nothing of a certificate valid for a year', async () => {
      const h = harness();
      const { app, logs } = await createHealthApp([{ url: h.tls.url(), sslRootCert: h.caPem, ...quick }]);
      try {
        const health = await request(app.getHttpServer()).get('/health/ready');
        expect(health.body.info.database).toMatchObject({ status: 'up', certificateDaysLeft: 364 });
      } finally {
        await app.close();
      }
      expect(logs.text()).toMatch(/Connected to 127\.0\.0\.1/); // the log was captured
      expect(logs.text()).not.toMatch(/certificate .* expires/);
    });
  });
});
