import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, readFile, rename, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createCertificateAuthority, issueClientCertificate } from '../../local-postgres/tls-certificates.js';
import { readDatabaseEnv } from '../config/database.config.js';
import { resolveDatabaseConfig } from '../config/resolve-database-config.js';
import { ConfigurationError } from '../errors/configuration.errors.js';
import type { SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { parsePasswordFile } from './password-source.js';
import { type FileReport, WatchedFile } from './watched-file.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'credentials-spec-'));
});
afterAll(() => rm(dir, { recursive: true, force: true }));

describe('WatchedFile: read again only when fs.stat says the file changed', () => {
  const events: Array<{ kind: string; problem?: string }> = [];
  const report: FileReport = (e) => events.push({ kind: e.kind, problem: e.problem });
  const T0 = new Date('2026-01-01T00:00:00Z');

  async function watched(name: string, text: string) {
    const path = join(dir, name);
    await writeFile(path, text);
    events.length = 0;
    const file = new WatchedFile(path, 'DATABASE_PASSWORD_FILE', parsePasswordFile, (parsePasswordFile(text) as { value: string }).value);
    return { path, file };
  }

  it('a rewrite in place (same size) and a replacement by rename are both seen, each once', async () => {
    const { path, file } = await watched('in-place', 'first-password\n');
    expect(await file.current(report)).toBe('first-password');
    expect(file.version).toBe(0);
    await writeFile(path, 'other-password\n');
    expect(await file.current(report)).toBe('other-password');
    expect(await file.current(report)).toBe('other-password');
    await writeFile(`${path}.new`, 'third-password');
    await rename(`${path}.new`, path);
    expect(await file.current(report)).toBe('third-password');
    expect(file.version).toBe(2);
    expect(events).toEqual([{ kind: 'changed' }, { kind: 'changed' }]);
  });

  it('a rewrite keeping size and modification time is invisible to fs.stat, and seen by a forced read', async () => {
    const { path, file } = await watched('same-stat', 'aaaaaaaa');
    await utimes(path, T0, T0);
    expect(await file.current(report)).toBe('aaaaaaaa');
    await writeFile(path, 'bbbbbbbb');
    await utimes(path, T0, T0);
    expect(await file.current(report)).toBe('aaaaaaaa');
    expect(await file.current(report, { force: true })).toBe('bbbbbbbb');
    expect(file.version).toBe(1);
  });

  it('an empty or missing file keeps the last good value, reported once per version, never quoting content', async () => {
    const { path, file } = await watched('empty', 'kept-password');
    await writeFile(path, '');
    expect(await file.current(report)).toBe('kept-password');
    expect(await file.current(report)).toBe('kept-password');
    await rm(path);
    expect(await file.current(report)).toBe('kept-password');
    expect(await file.current(report)).toBe('kept-password');
    expect(events).toEqual([
      { kind: 'unusable', problem: 'DATABASE_PASSWORD_FILE names an empty file' },
      { kind: 'unusable', problem: 'DATABASE_PASSWORD_FILE cannot be read (ENOENT)' },
    ]);
    await writeFile(path, 'next-password\r\n');
    expect(await file.current(report)).toBe('next-password');
    expect(JSON.stringify(events)).not.toContain('password"');
  });
});

describe('password and client certificate options at startup', () => {
  const url = 'postgresql://app@db.example.com/app';
  const resolve = (options: SecureDatabaseModuleOptions) => resolveDatabaseConfig({ url, ...options }, {});
  const problemsOf = (options: SecureDatabaseModuleOptions): string => {
    try {
      resolve(options);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigurationError);
      return (error as Error).message;
    }
    throw new Error('expected a configuration error');
  };

  it('DATABASE_PASSWORD_FILE: read at startup (trailing line break dropped), wins over the URL password with a warning naming no value', async () => {
    const file = join(dir, 'password');
    await writeFile(file, 'from-the-file\n');
    const config = resolveDatabaseConfig({ url: 'postgresql://app:from-the-url@db.example.com/app', passwordFile: file }, {});
    expect(config.client.password).toBe('from-the-file');
    expect(config.credentials.password).toEqual({ kind: 'file', label: 'DATABASE_PASSWORD_FILE', path: file });
    expect(config.warnings).toContain('DATABASE_URL has a password and DATABASE_PASSWORD_FILE is set: DATABASE_PASSWORD_FILE is used');
    expect(JSON.stringify(config.warnings)).not.toMatch(/from-the-(url|file)/);
    expect(JSON.stringify(config.client)).not.toContain('from-the-file');
  });

  it('an unreadable or empty password file, both password and passwordFile, a password of the wrong type: named, never echoed', async () => {
    const pasted = 'Sup3r-Secret-Pasted-Here';
    expect(problemsOf({ passwordFile: pasted })).toContain('DATABASE_PASSWORD_FILE names no readable file (ENOENT): give the path of the mounted secret file');
    expect(problemsOf({ passwordFile: pasted })).not.toContain(pasted);
    const empty = join(dir, 'empty-password');
    await writeFile(empty, '\n');
    expect(problemsOf({ passwordFile: empty })).toContain('DATABASE_PASSWORD_FILE names an empty file');
    expect(problemsOf({ password: pasted, passwordFile: empty })).toContain('set only one of DATABASE_PASSWORD (password) and DATABASE_PASSWORD_FILE (passwordFile)');
    const wrongType = problemsOf({ password: 424242 as unknown as string });
    expect(wrongType).toContain('DATABASE_PASSWORD (password) must be a string or a function');
    expect(wrongType).not.toContain('424242');
  });

  it('the password option: a string wins over the URL; a function is kept for each new connection', () => {
    const fromOption = resolveDatabaseConfig({ url: 'postgresql://app:in-url@db.example.com/app', password: 'from-option' }, {});
    expect(fromOption.client.password).toBe('from-option');
    expect(fromOption.credentials.password.kind).toBe('option');
    const provider = async () => 'token';
    const fromProvider = resolve({ password: provider });
    expect(fromProvider.client.password).toBe(provider);
    expect(fromProvider.credentials.password).toMatchObject({ kind: 'provider', provider });
    expect(resolve({}).credentials.password).toEqual({ kind: 'none' });
  });

  it('every new setting has its environment twin', () => {
    expect(
      readDatabaseEnv({
        DATABASE_URL: url,
        DATABASE_PASSWORD: 'p',
        DATABASE_PASSWORD_FILE: '/run/secrets/db-password',
        DATABASE_SSL_CERT: '/tls/tls.crt',
        DATABASE_SSL_KEY: '/tls/tls.key',
        DATABASE_SSL_KEY_PASSPHRASE: 'x',
      }),
    ).toEqual({ url, password: 'p', passwordFile: '/run/secrets/db-password', sslCert: '/tls/tls.crt', sslKey: '/tls/tls.key', sslKeyPassphrase: 'x' });
  });

  it('a client certificate: checked at startup (key, match, passphrase), its key kept decrypted and out of any dump of the options', async () => {
    const ca = await createCertificateAuthority(dir, 'spec-ca');
    const plain = await issueClientCertificate(ca, dir, 'app');
    const other = await issueClientCertificate(ca, dir, 'other');
    const passphrase = 'correct horse battery staple';
    const encrypted = await issueClientCertificate(ca, dir, 'app', { name: 'encrypted', passphrase });

    const config = resolve({ sslCert: plain.certPath, sslKey: plain.keyPath });
    const ssl = config.client.ssl as { cert: string; key: string };
    expect(ssl.cert).toBe(await readFile(plain.certPath, 'utf8'));
    expect(ssl.key).toContain('BEGIN PRIVATE KEY');
    expect(Object.keys(ssl)).not.toContain('key');
    expect(JSON.stringify(config.client)).not.toContain('PRIVATE KEY');
    expect(config.tls.clientCertificate?.pair.subject).toBe('CN=app');
    expect(config.tls.clientCertificate?.watched).toBe(true);

    const decrypted = resolve({ sslCert: encrypted.certPath, sslKey: encrypted.keyPath, sslKeyPassphrase: passphrase }).client.ssl as { key: string };
    expect(decrypted.key).toContain('BEGIN PRIVATE KEY');
    expect(problemsOf({ sslCert: encrypted.certPath, sslKey: encrypted.keyPath })).toContain('DATABASE_SSL_KEY is encrypted: set DATABASE_SSL_KEY_PASSPHRASE');
    const wrong = problemsOf({ sslCert: encrypted.certPath, sslKey: encrypted.keyPath, sslKeyPassphrase: 'not it at all' });
    expect(wrong).toContain('DATABASE_SSL_KEY could not be decrypted with DATABASE_SSL_KEY_PASSPHRASE');
    expect(wrong).not.toContain('not it at all');
    expect(problemsOf({ sslCert: plain.certPath, sslKey: other.keyPath })).toContain('DATABASE_SSL_KEY is not the private key of DATABASE_SSL_CERT');
    expect(problemsOf({ sslKey: plain.keyPath })).toContain('DATABASE_SSL_KEY needs its certificate: set DATABASE_SSL_CERT');
    expect(problemsOf({ sslKeyPassphrase: passphrase })).toContain('DATABASE_SSL_KEY_PASSPHRASE is set but there is no client key');
    // The options win over the URL's sslcert / sslkey, and the URL's are named as such.
    expect(problemsOf({ url: `${url}?sslcert=${plain.certPath}&sslkey=${other.keyPath}` })).toContain('sslkey in DATABASE_URL is not the private key of sslcert in DATABASE_URL');
    expect(resolve({ url: `${url}?sslcert=/nowhere&sslkey=/nowhere`, sslCert: plain.certPath, sslKey: plain.keyPath }).tls.clientCertificate?.labels).toEqual({
      cert: 'DATABASE_SSL_CERT',
      key: 'DATABASE_SSL_KEY',
    });
  });
});
