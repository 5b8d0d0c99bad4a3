import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { AuthenticationError, ConfigurationError } from '../../src/index.js';
import { DIRECT_TLS_NEEDS_17 } from '../../src/secure-database/pool/startup-connection.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';
import { harness } from '../support/harness.js';
import { SSL_REQUEST, SwitchableForwarder } from '../support/switchable-forwarder.js';
import { startTlsReencryptingProxy } from '../support/tls-reencrypting-proxy.js';

const h = harness();
// Direct TLS needs PostgreSQL 17: on an older server (SECURE_PG_MAJOR=14 … 16) its test asserts the clear refusal instead.
const directTls = h.binaries.major >= 17;
/** The TLS cluster's URL for the app role, with `params`, dialled at `port` instead of the server's. */
const urlAt = (port: number, params: Record<string, string> = {}) => h.tls.url(params).replace(`:${h.tls.facts.port}/`, `:${port}/`);

/** The libpq TLS parameters the README lists as honoured, on a real server (PostgreSQL 17+ for direct TLS). */
describe('DATABASE_URL sslnegotiation and channel_binding', () => {
  describe('sslnegotiation', () => {
    let forwarder: SwitchableForwarder;
    beforeAll(async () => {
      forwarder = await SwitchableForwarder.start(h.tls.facts.port);
    });
    afterAll(() => forwarder.close());

    it.each([
      ...(directTls ? [['direct', { sslnegotiation: 'direct' }] as const] : []),
      ['postgres (the default)', {}],
    ])('%s: the first bytes on the wire, and a verified, asserted connection', async (name, params) => {
      const index = forwarder.accepted;
      const { db, close } = await startDatabaseApp({ url: urlAt(forwarder.port, params), sslRootCert: h.caPem, startupRetries: 0 });
      try {
        expect(forwarder.accepted).toBe(index + 1);
        const first = forwarder.firstChunks[index];
        if (name === 'direct') {
          // A TLS handshake record (content type 22) at once: no SSLRequest round trip.
          expect(first[0]).toBe(0x16);
          expect(first.subarray(0, 8).equals(SSL_REQUEST)).toBe(false);
        } else {
          expect(first.equals(SSL_REQUEST)).toBe(true);
        }
        expect(db.lastTls).toMatchObject({ ssl: true, verified: true });
        expect(db.stats()).toMatchObject({ tlsAssertionsPassed: 1, tlsAssertionsFailed: 0 });
      } finally {
        await close();
      }
    });
  });

  if (!directTls) describe(`sslnegotiation=direct on PostgreSQL ${h.binaries.major} (before 17)`, () => {
    let forwarder: SwitchableForwarder;
    beforeAll(async () => {
      forwarder = await SwitchableForwarder.start(h.tls.facts.port);
    });
    afterAll(() => forwarder.close());

    it('startup fails at once with a ConfigurationError naming the setting and the version, not a retried "connection reset"', async () => {
      const index = forwarder.accepted;
      const error = await startupError({ url: urlAt(forwarder.port, { sslnegotiation: 'direct' }), sslRootCert: h.caPem, startupRetries: 3 });
      expect(error).toBeInstanceOf(ConfigurationError);
      expect(error.message).toBe(`Invalid database configuration: ${DIRECT_TLS_NEEDS_17}`);
      expect(forwarder.accepted).toBe(index + 1); // one attempt: retrying cannot help
      expect(forwarder.firstChunks[index][0]).toBe(0x16); // it did try direct TLS
      expect(error.message).not.toContain(h.tls.facts.password);
    });
  });

  describe('channel_binding, against a man in the middle that re-encrypts with a certificate from the trusted CA', () => {
    let mitm: Awaited<ReturnType<typeof startTlsReencryptingProxy>>;
    beforeAll(async () => {
      mitm = await startTlsReencryptingProxy(h.caPath, h.tls.facts.port);
    });
    afterAll(() => mitm.close());

    it('channel_binding=prefer authenticates with the server itself (SCRAM-SHA-256-PLUS over verified TLS)', async () => {
      const { db, close } = await startDatabaseApp({ url: h.tls.url({ channel_binding: 'prefer' }), sslRootCert: h.caPem, startupRetries: 0 });
      await close();
      expect(db.config.client).toMatchObject({ enableChannelBinding: true });
      expect(db.lastTls).toMatchObject({ ssl: true, verified: true });
    });

    it.each(['prefer', 'require'])('channel_binding=%s: the server refuses the login (28000), since the certificate the client bound to is not its own', async (mode) => {
      const sessions = mitm.sessions;
      const error = await startupError({ url: urlAt(mitm.port, { channel_binding: mode }), sslRootCert: h.caPem, startupRetries: 3, appEnv: 'development' });
      expect(mitm.sessions).toBe(sessions + 1); // both TLS legs were up: the client's certificate check passed
      expect(error).toBeInstanceOf(AuthenticationError);
      expect((error as AuthenticationError).sqlstate).toBe('28000');
      expect(error.message).toContain('SCRAM channel binding check failed');
    });

    it.each([
      ['channel_binding=disable', { channel_binding: 'disable' }],
      ['no channel_binding (the default)', {}],
    ])('%s: the same man in the middle logs in, and pg_stat_ssl cannot tell (both legs are TLS)', async (_name, params) => {
      const sessions = mitm.sessions;
      const { db, close } = await startDatabaseApp({ url: urlAt(mitm.port, params), sslRootCert: h.caPem, startupRetries: 0 });
      await close();
      expect(mitm.sessions).toBe(sessions + 1);
      expect(db.config.client).toMatchObject({ enableChannelBinding: false });
      expect(db.stats()).toMatchObject({ tlsAssertionsPassed: 1, tlsAssertionsFailed: 0 });
    });
  });
});
