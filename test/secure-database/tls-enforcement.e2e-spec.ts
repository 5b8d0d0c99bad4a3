import { afterAll, afterEach, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { ConfigurationError, ConnectionError, SslNotActiveError, TlsVerificationError } from '../../src/index.js';
import { freePort } from '../../src/local-postgres/index.js';
import { harness } from '../support/harness.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';
import { TcpFaultProxy } from '../support/tcp-fault-proxy.js';
import { startTlsTerminatingProxy } from '../support/tls-terminating-proxy.js';

const h = harness();
const quick = { startupRetries: 0, connectTimeoutMs: 3000 };

describe('TLS enforcement on real servers', () => {
  it('verify-full (the default) connects to the TLS cluster; both ends agree TLS is on and verified', async () => {
    const { db, pool, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem });
    try {
      expect(db.config.tls.mode).toBe('verify-full');
      expect(db.lastTls).toMatchObject({ ssl: true, verified: true });
      expect(db.lastTls?.protocol).toMatch(/^TLSv1\.[23]$/);
      const { rows } = await pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
      expect(rows[0].ssl).toBe(true);
    } finally {
      await close();
    }
  });

  it('verify-full also checks a DNS host name (localhost)', async () => {
    const { db, close } = await startDatabaseApp({ url: h.tls.url({}, { host: 'localhost' }), sslRootCert: h.caPath });
    await close();
    expect(db.lastTls?.verified).toBe(true);
  });

  // Counted by attempts: the TCP connections a proxy in front of the server accepted, and the module's
  // retry log ("attempt N of M"). The control shows both counters do see retries.
  describe('startup never retries a TLS failure (startupRetries: 3)', () => {
    let terminator: Awaited<ReturnType<typeof startTlsTerminatingProxy>>;
    let proxy: TcpFaultProxy | undefined;
    beforeAll(async () => {
      terminator = await startTlsTerminatingProxy(h.caPath, h.plain.facts.port);
    });
    afterEach(() => proxy?.close());
    afterAll(() => terminator.close());

    /** Starts the module through a fresh proxy in front of `port`; the error, the attempts and the retry log lines. */
    const attempt = async (url: string, serverPort: number, options: { sslRootCert?: string } = { sslRootCert: h.caPem }) => {
      proxy = await TcpFaultProxy.start({ host: '127.0.0.1', port: serverPort });
      const warn = jest.spyOn(Logger.prototype, 'warn');
      try {
        const error = await startupError({ url: url.replace(/:(\d+)\//, `:${proxy.port}/`), startupRetries: 3, connectTimeoutMs: 3000, ...options });
        const retries = warn.mock.calls.map((c) => String(c[0])).filter((line) => /attempt \d of 4/.test(line));
        return { error, attempts: proxy.accepted, retries };
      } finally {
        warn.mockRestore();
      }
    };

    it('a CA that did not sign the server certificate: one attempt', async () => {
      const { error, attempts, retries } = await attempt(h.tls.url(), h.tls.facts.port, { sslRootCert: readFileSync(h.unrelatedCaPath, 'utf8') });
      expect(error).toBeInstanceOf(TlsVerificationError);
      expect(error.message).toMatch(/TLS verification failed: the server certificate .*(not signed by a trusted CA|self-signed)/);
      expect({ attempts, retries }).toEqual({ attempts: 1, retries: [] });
    });

    it('a certificate for another host: one attempt', async () => {
      const { error, attempts, retries } = await attempt(h.wrongHost.url(), h.wrongHost.facts.port);
      expect(error).toBeInstanceOf(TlsVerificationError);
      expect(error.message).toContain('does not name this host');
      expect({ attempts, retries }).toEqual({ attempts: 1, retries: [] });
    });

    it('a server that offers no TLS: one attempt', async () => {
      const { error, attempts, retries } = await attempt(h.plain.url(), h.plain.facts.port);
      expect(error).toBeInstanceOf(SslNotActiveError);
      expect(error.message).toBe('SSL required but not active: the server does not offer TLS');
      expect({ attempts, retries }).toEqual({ attempts: 1, retries: [] });
    });

    it('a TLS terminator that forwards in plaintext (caught by pg_stat_ssl): one attempt', async () => {
      const { error, attempts, retries } = await attempt(h.plain.url(), terminator.port);
      expect(error).toBeInstanceOf(SslNotActiveError);
      expect(error.message).toBe('SSL required but not active: the server reports this connection unencrypted (pg_stat_ssl)');
      expect({ attempts, retries }).toEqual({ attempts: 1, retries: [] });
    });

    it('control: a transient failure (the connection reset, nothing behind the proxy) is retried 3 times, and both counters see it', async () => {
      const { error, attempts, retries } = await attempt(h.tls.url(), await freePort());
      expect(error).toBeInstanceOf(ConnectionError);
      expect(attempts).toBe(4);
      expect(retries.map((line) => /attempt (\d) of 4/.exec(line)?.[1])).toEqual(['2', '3', '4']);
    });
  });

  it('the Node CA store (no CA configured) does not trust a private CA', async () => {
    expect(await startupError({ url: h.tls.url(), ...quick })).toBeInstanceOf(TlsVerificationError);
  });

  it('a certificate for another host is refused under verify-full and accepted under verify-ca', async () => {
    const refused = await startupError({ url: h.wrongHost.url(), sslRootCert: h.caPem, ...quick });
    expect(refused).toBeInstanceOf(TlsVerificationError);
    expect(refused.message).toContain('does not name this host');

    const { db, close } = await startDatabaseApp({ url: h.wrongHost.url({ sslmode: 'verify-ca' }), sslRootCert: h.caPem });
    await close();
    expect(db.config.tls).toMatchObject({ mode: 'verify-ca', verifiesHostname: false });
    expect(db.lastTls).toMatchObject({ ssl: true, verified: true });
  });

  it('sslmode=require connects encrypted but unverified, and warns at startup', async () => {
    const warn = jest.spyOn(Logger.prototype, 'warn');
    try {
      const { db, close } = await startDatabaseApp({ url: h.tls.url({ sslmode: 'require' }) });
      await close();
      expect(db.lastTls).toMatchObject({ ssl: true, verified: false });
      expect(warn.mock.calls.map((c) => String(c[0])).join('\n')).toMatch(/sslmode=require .* man-in-the-middle/);
    } finally {
      warn.mockRestore();
    }
  });

  it.each([
    ['verify-full (the default)', () => h.tls, {}, 'verify-full', 'verified (chain and host name)'],
    ['verify-ca, certificate for another host', () => h.wrongHost, { sslmode: 'verify-ca' }, 'verify-ca', 'verified (chain only)'],
    ['require, no CA', () => h.tls, { sslmode: 'require' }, 'require', 'NOT verified'],
  ] as const)('the startup line states what was verified: %s', async (_name, cluster, params, mode, identity) => {
    const log = jest.spyOn(Logger.prototype, 'log');
    try {
      const { db, close } = await startDatabaseApp({
        url: cluster().url(params),
        ...(mode === 'require' ? {} : { sslRootCert: h.caPem }),
        applicationName: 'startup-line-test',
      });
      await close();
      const { host, port, database, user } = cluster().facts;
      const line = log.mock.calls.map((c) => String(c[0])).find((l) => l.startsWith('Connected to '));
      expect(line).toBe(
        `Connected to ${host}:${port}/${database} as ${user}: TLS ${db.lastTls?.protocol} (${db.lastTls?.cipher}), sslmode=${mode}, ` +
          `server identity ${identity}; PostgreSQL ${db.lastTls?.serverVersion}; application_name=startup-line-test`,
      );
      expect(db.lastTls?.protocol).toMatch(/^TLSv1\.[23]$/);
      expect(db.lastTls?.verified).toBe(mode !== 'require');
    } finally {
      log.mockRestore();
    }
  });

  it('URL sslmode=require plus DATABASE_SSL_ROOT_CERT keeps the CA (verify-ca): a wrong CA is still refused', async () => {
    const { db, close } = await startDatabaseApp({ url: h.tls.url({ sslmode: 'require' }), sslRootCert: h.caPem });
    await close();
    expect(db.config.tls.mode).toBe('verify-ca');
    expect(db.lastTls?.verified).toBe(true);
    const error = await startupError({ url: h.tls.url({ sslmode: 'require' }), sslRootCert: readFileSync(h.unrelatedCaPath, 'utf8'), ...quick });
    expect(error).toBeInstanceOf(TlsVerificationError);
  });

  it.each(['disable', 'prefer'])('sslmode=%s is refused at startup', async (sslmode) => {
    const error = await startupError({ url: h.plain.url({ sslmode }), appEnv: 'production' });
    expect(error).toBeInstanceOf(ConfigurationError);
    expect(error.message).toContain(`sslmode=${sslmode} may send credentials and data in plaintext and is refused`);
    expect(error.message).not.toContain(h.plain.facts.password);
  });

  it('the development opt-in allows plaintext, and the assertion reports it honestly', async () => {
    const log = jest.spyOn(Logger.prototype, 'log');
    try {
      const { db, pool, close } = await startDatabaseApp({ url: h.plain.url({ sslmode: 'disable' }), allowPlaintext: true, appEnv: 'development' });
      const { rows } = await pool.query('SELECT 1 AS one');
      await close();
      expect(rows[0].one).toBe(1);
      expect(db.lastTls).toMatchObject({ ssl: false, verified: false });
      expect(log.mock.calls.map((c) => String(c[0])).join('\n')).toContain('PLAINTEXT (development opt-in)');
    } finally {
      log.mockRestore();
    }
  });

  it.each<Record<string, string>>([{}, { sslmode: 'require' }])('a server without TLS is refused at startup with "SSL required but not active" (%j)', async (params) => {
    const error = await startupError({ url: h.plain.url(params), sslRootCert: h.caPem, ...quick });
    expect(error).toBeInstanceOf(SslNotActiveError);
    expect(error.message).toBe('SSL required but not active: the server does not offer TLS');
    expect(error.message).not.toContain(h.plain.facts.password);
  });

  describe('a TLS terminator forwarding to the server in plaintext', () => {
    let proxy: Awaited<ReturnType<typeof startTlsTerminatingProxy>>;
    beforeAll(async () => {
      proxy = await startTlsTerminatingProxy(h.caPath, h.plain.facts.port);
    });
    afterAll(() => proxy.close());

    it('passes the client-side check but is caught by pg_stat_ssl', async () => {
      const url = h.plain.url({}, { host: 'localhost' }).replace(`:${h.plain.facts.port}/`, `:${proxy.port}/`);
      const error = await startupError({ url, sslRootCert: h.caPem, ...quick });
      expect(error).toBeInstanceOf(SslNotActiveError);
      expect(error.message).toBe('SSL required but not active: the server reports this connection unencrypted (pg_stat_ssl)');
    });
  });

  it('every new physical connection runs the assertion, and reused ones do not', async () => {
    const applicationName = `assert-count-${process.pid}`;
    const { db, pool, close } = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, poolMax: 6, applicationName });
    try {
      const clients: pg.PoolClient[] = await Promise.all(Array.from({ length: 6 }, () => pool.connect()));
      for (const c of clients) c.release();
      for (let i = 0; i < 20; i++) await pool.query('SELECT 1');
      expect(db.stats()).toMatchObject({ total: 6, tlsAssertionsPassed: 6, tlsAssertionsFailed: 0 });
      const rows = await h.tls.withSuperuser(async (admin) =>
        (await admin.query('SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = $1', [applicationName])).rows,
      );
      expect(rows).toHaveLength(6);
      expect(rows.every((r) => r.ssl === true)).toBe(true);
    } finally {
      await close();
    }
  });
});
