import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { copyFile, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuthenticationError,
  ConfigurationError,
  type DatabaseService,
  type SecureDatabaseModuleOptions,
  TlsVerificationError,
  readDatabaseEnv,
  sql,
} from '../../src/index.js';
import { harness } from '../support/harness.js';
import { CERT_ROLE, type ClientCertificateCluster, startClientCertificateCluster } from '../support/client-certificate-cluster.js';
import { everythingShown, failedStartup, startCredentialsApp } from './credentials-app.js';

/** Mutual TLS on a real server whose pg_hba.conf says `hostssl … cert` and `clientcert=verify-full` with scram. */
describe('client certificates (mTLS)', () => {
  let mtls: ClientCertificateCluster;
  /** Lines of every private key's PEM body, and the passphrase: none may ever be shown. */
  let secrets: string[];

  beforeAll(async () => {
    mtls = await startClientCertificateCluster();
    const keys = await Promise.all(Object.values(mtls.certificates).map((c) => readFile(c.keyPath, 'utf8')));
    secrets = [mtls.passphrase, ...keys.flatMap((pem) => pem.split('\n').filter((line) => line.length > 20 && !line.startsWith('-----')))];
  }, 120_000);
  afterAll(() => mtls?.stop());

  const certRoleUrl = (params: Record<string, string> = {}) => {
    const { host, port, database } = mtls.cluster.facts;
    const query = new URLSearchParams(params).toString();
    return `postgresql://${CERT_ROLE}@${host}:${port}/${database}${query ? `?${query}` : ''}`;
  };
  const base = (): SecureDatabaseModuleOptions => ({ sslRootCert: mtls.caPem, appEnv: 'production', startupRetries: 0 });
  const expectNothingSecret = (shown: string) => {
    for (const secret of secrets) expect(shown).not.toContain(secret);
  };

  /** Who the server says this connection is, and the certificate it was shown. */
  async function serverView(options: SecureDatabaseModuleOptions) {
    const started = await startCredentialsApp(options);
    try {
      const row = await started.service.fetchrow<{ user: string; dn: string | null; ssl: boolean }>(
        sql`SELECT current_user AS user, client_dn AS dn, ssl FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()`,
      );
      return { ...row, logs: started.logs.text() };
    } finally {
      await started.close();
    }
  }

  describe('pg_hba.conf `cert`: the certificate is the only credential', () => {
    it('the right certificate connects, from DATABASE_SSL_CERT / DATABASE_SSL_KEY paths in the environment', async () => {
      const options = readDatabaseEnv({
        DATABASE_URL: certRoleUrl(),
        DATABASE_SSL_ROOT_CERT: mtls.caPem,
        DATABASE_SSL_CERT: mtls.certificates.certRole.certPath,
        DATABASE_SSL_KEY: mtls.certificates.certRole.keyPath,
        APP_ENV: 'production',
      });
      const seen = await serverView(options);
      expect(seen).toMatchObject({ user: CERT_ROLE, dn: `/CN=${CERT_ROLE}`, ssl: true });
      expect(seen.logs).toMatch(/client certificate DATABASE_SSL_CERT \(CN=cert_login, valid until .*\), read again when it changes/);
      expectNothingSecret(seen.logs);
    });

    it('as PEM text in the options, and as sslcert / sslkey paths in the URL', async () => {
      const [cert, key] = await Promise.all([readFile(mtls.certificates.certRole.certPath, 'utf8'), readFile(mtls.certificates.certRole.keyPath, 'utf8')]);
      expect(await serverView({ ...base(), url: certRoleUrl(), sslCert: cert, sslKey: key })).toMatchObject({ user: CERT_ROLE, dn: `/CN=${CERT_ROLE}` });
      const { certPath, keyPath } = mtls.certificates.certRole;
      const seen = await serverView({ ...base(), url: certRoleUrl({ sslcert: certPath, sslkey: keyPath }) });
      expect(seen).toMatchObject({ user: CERT_ROLE, dn: `/CN=${CERT_ROLE}` });
      expect(seen.logs).toContain('client certificate sslcert in DATABASE_URL');
    });

    it('an encrypted key with its passphrase (DATABASE_SSL_KEY_PASSPHRASE) works; the passphrase is never shown', async () => {
      const { certPath, keyPath } = mtls.certificates.certRoleEncrypted;
      expect(await readFile(keyPath, 'utf8')).toContain('BEGIN ENCRYPTED PRIVATE KEY');
      const seen = await serverView({ ...base(), url: certRoleUrl(), sslCert: certPath, sslKey: keyPath, sslKeyPassphrase: mtls.passphrase });
      expect(seen).toMatchObject({ user: CERT_ROLE, dn: `/CN=${CERT_ROLE}` });
      expectNothingSecret(seen.logs);
    });

    it('a certificate close to its end connects, and startup warns when it expires', async () => {
      const { certPath, keyPath } = mtls.certificates.shortLived;
      const seen = await serverView({ ...base(), url: certRoleUrl(), sslCert: certPath, sslKey: keyPath });
      expect(seen).toMatchObject({ user: CERT_ROLE, dn: `/CN=${CERT_ROLE}` });
      expect(seen.logs).toMatch(/\[warn\] The client certificate \(DATABASE_SSL_CERT\) expires in (9|10) day\(s\), on \d{4}-.*: renew it/);
      const longLived = await serverView({ ...base(), url: certRoleUrl(), sslCert: mtls.certificates.certRole.certPath, sslKey: mtls.certificates.certRole.keyPath });
      expect(longLived.logs).not.toContain('expires in');
    });

    it('no certificate: refused, and the error names DATABASE_SSL_CERT and DATABASE_SSL_KEY', async () => {
      const { error, logs } = await failedStartup({ ...base(), url: certRoleUrl() });
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toMatch(/the server requires a client certificate and none is configured: set DATABASE_SSL_CERT and DATABASE_SSL_KEY/);
      expect(error.message).toContain('SQLSTATE 28000');
      expect(logs.text()).toContain('Database startup failed [DB_AUTHENTICATION_FAILED]');
    });

    it('a certificate for another name (the right CA): refused, naming DATABASE_SSL_CERT, never echoing the key', async () => {
      const { certPath, keyPath } = mtls.certificates.otherName;
      const { error, logs } = await failedStartup({ ...base(), url: certRoleUrl(), sslCert: certPath, sslKey: keyPath });
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toMatch(/the server refused the client certificate \(DATABASE_SSL_CERT\): its CN must be the database user name/);
      expect(error.message).not.toContain('someone_else'); // production: no names from the driver
      expectNothingSecret(everythingShown(error, logs));
    });

    it('a certificate from another CA: refused in the TLS handshake, naming DATABASE_SSL_CERT, never echoing the key', async () => {
      const { certPath, keyPath } = mtls.certificates.otherCa;
      const { error, logs } = await failedStartup({ ...base(), url: certRoleUrl(), sslCert: certPath, sslKey: keyPath });
      expect(error).toBeInstanceOf(TlsVerificationError);
      expect(error.message).toMatch(/the server refused the client certificate \(DATABASE_SSL_CERT\): it is not signed by a CA the server trusts/);
      expectNothingSecret(everythingShown(error, logs));
    });
  });

  describe('pg_hba.conf `scram-sha-256 clientcert=verify-full`: the password and a certificate naming the user', () => {
    const appOptions = (extra: SecureDatabaseModuleOptions = {}): SecureDatabaseModuleOptions => ({ ...base(), url: mtls.cluster.url(), ...extra });

    it('the right certificate and password connect', async () => {
      const { certPath, keyPath } = mtls.certificates.app;
      expect(await serverView(appOptions({ sslCert: certPath, sslKey: keyPath }))).toMatchObject({ user: 'app', dn: '/CN=app', ssl: true });
    });

    it('the right password without a certificate: refused, naming the certificate settings', async () => {
      const { error } = await failedStartup(appOptions());
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toMatch(/requires a client certificate and none is configured: set DATABASE_SSL_CERT and DATABASE_SSL_KEY/);
    });

    it("another role's certificate (CN is not the user): refused, the error names DATABASE_SSL_CERT", async () => {
      const { certPath, keyPath } = mtls.certificates.certRole;
      const { error, logs } = await failedStartup(appOptions({ sslCert: certPath, sslKey: keyPath }));
      expect(error).toBeInstanceOf(AuthenticationError);
      expect(error.message).toContain('DATABASE_SSL_CERT');
      expect(error.message).toMatch(/CN must be the (database )?user name/);
      expectNothingSecret(everythingShown(error, logs));
    });
  });

  describe('certificate rotation: files given as paths are read again for new connections when they change', () => {
    /** Ends every connection of `user` on the mtls cluster, so the next query opens a new one. */
    const terminate = (user: string) =>
      mtls.cluster.withSuperuser((admin) =>
        admin.query(`SELECT pg_catalog.pg_terminate_backend(pid, 5000) FROM pg_catalog.pg_stat_activity WHERE usename = $1 AND backend_type = 'client backend'`, [user]),
      );
    const serial = (service: DatabaseService) =>
      service.fetchval<string>(sql`SELECT client_serial::text FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()`);

    it('a renewed client certificate and key reach new connections; a half-rotated pair (new certificate, old key) is not used until it matches', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'mtls-rotation-'));
      try {
        const certFile = join(dir, 'tls.crt');
        const keyFile = join(dir, 'tls.key');
        await copyFile(mtls.certificates.certRole.certPath, certFile);
        await copyFile(mtls.certificates.certRole.keyPath, keyFile);
        const started = await startCredentialsApp({ ...base(), url: certRoleUrl(), sslCert: certFile, sslKey: keyFile, poolMax: 1 });
        try {
          const first = await serial(started.service);
          await copyFile(mtls.certificates.certRoleRenewed.certPath, certFile); // the certificate first: the key is still the old one
          await terminate(CERT_ROLE);
          expect(await serial(started.service)).toBe(first);
          expect(started.logs.text()).toContain('DATABASE_SSL_KEY is not the private key of DATABASE_SSL_CERT: give the key the certificate was issued for: new connections keep using the previous value');
          await copyFile(mtls.certificates.certRoleRenewed.keyPath, keyFile);
          await terminate(CERT_ROLE);
          const renewed = await serial(started.service);
          expect(renewed).not.toBe(first);
          expect(started.logs.text()).toContain('DATABASE_SSL_KEY changed: new connections use it');
          expectNothingSecret(started.logs.text());
        } finally {
          await started.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 30_000);

    it('the CA file (DATABASE_SSL_ROOT_CERT as a path) replaced: new connections verify the server against the new one', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'ca-rotation-'));
      try {
        const caFile = join(dir, 'ca.crt');
        await copyFile(mtls.caPath, caFile);
        const { certPath, keyPath } = mtls.certificates.certRole;
        const started = await startCredentialsApp({ ...base(), sslRootCert: caFile, url: certRoleUrl(), sslCert: certPath, sslKey: keyPath, poolMax: 1 });
        try {
          expect(started.logs.text()).toContain('DATABASE_SSL_ROOT_CERT read again when it changes');
          // A CA that did not sign this server's certificate: the next new connection is refused by verify-full.
          await copyFile(harness().unrelatedCaPath, caFile);
          await terminate(CERT_ROLE);
          const error = await started.service.fetchval(sql`SELECT 1`).catch((e: unknown) => e);
          expect(error).toBeInstanceOf(TlsVerificationError);
          await copyFile(mtls.caPath, caFile);
          expect(await started.service.fetchval(sql`SELECT 2`)).toBe(2);
        } finally {
          await started.close();
        }
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    }, 30_000);
  });

  describe('refused at startup, before any connection, naming the setting and never its content', () => {
    const resolveProblem = async (options: SecureDatabaseModuleOptions) => {
      const { error, logs } = await failedStartup({ ...base(), url: certRoleUrl(), ...options });
      expect(error).toBeInstanceOf(ConfigurationError);
      expectNothingSecret(everythingShown(error, logs));
      return error.message;
    };

    it('an encrypted key without its passphrase, or with a wrong one', async () => {
      const { certPath, keyPath } = mtls.certificates.certRoleEncrypted;
      expect(await resolveProblem({ sslCert: certPath, sslKey: keyPath })).toContain('DATABASE_SSL_KEY is encrypted: set DATABASE_SSL_KEY_PASSPHRASE');
      const wrong = `${mtls.passphrase}-not`;
      const message = await resolveProblem({ sslCert: certPath, sslKey: keyPath, sslKeyPassphrase: wrong });
      expect(message).toContain('DATABASE_SSL_KEY could not be decrypted with DATABASE_SSL_KEY_PASSPHRASE');
      expect(message).not.toContain(wrong);
    });

    it("a key that is not the certificate's, a certificate without a key, a key pasted without its header", async () => {
      expect(await resolveProblem({ sslCert: mtls.certificates.certRole.certPath, sslKey: mtls.certificates.app.keyPath })).toContain(
        'DATABASE_SSL_KEY is not the private key of DATABASE_SSL_CERT',
      );
      expect(await resolveProblem({ sslCert: mtls.certificates.certRole.certPath })).toContain('DATABASE_SSL_CERT needs its private key: set DATABASE_SSL_KEY');
      const body = (await readFile(mtls.certificates.certRole.keyPath, 'utf8')).split('\n').filter((l) => !l.startsWith('-----')).join('');
      const message = await resolveProblem({ sslCert: mtls.certificates.certRole.certPath, sslKey: body });
      expect(message).toContain('DATABASE_SSL_KEY is neither PEM text');
      expect(message).not.toContain(body.slice(0, 16));
    });
  });
});
