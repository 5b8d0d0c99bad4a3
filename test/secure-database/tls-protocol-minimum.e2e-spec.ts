import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { Logger } from '@nestjs/common';
import tls from 'node:tls';
import pg from 'pg';
import { TlsVerificationError } from '../../src/index.js';
import { startupError } from '../support/database-app.js';
import { type PrivateCluster, startPrivateCluster } from '../support/private-cluster.js';
import { SwitchableForwarder } from '../support/switchable-forwarder.js';

/**
 * TLS 1.2 is the minimum: a real PostgreSQL server limited to TLS 1.1 (ssl_max_protocol_version, and
 * ciphers at OpenSSL security level 0, without which OpenSSL offers no TLS 1.1 cipher at all) is
 * refused at startup, without retries, even in a process whose TLS defaults allow TLS 1.1 (as
 * `node --tls-min-v1.0` with a permissive cipher list would): the module's own `minVersion` refuses
 * it, not Node's default. A raw pg client in the same process connects over TLS 1.1, so the server
 * really speaks it.
 */
describe('the TLS 1.2 minimum, against a server that offers only TLS 1.1', () => {
  let pc: PrivateCluster;
  const defaults = { DEFAULT_MIN_VERSION: tls.DEFAULT_MIN_VERSION, DEFAULT_CIPHERS: tls.DEFAULT_CIPHERS };

  beforeAll(async () => {
    pc = await startPrivateCluster();
    // Reloaded, not set at start: the cluster's own TLS settings pin ssl_min_protocol_version to TLSv1.2.
    // After this only a TLS 1.1 client can connect, the superuser handle included.
    await pc.cluster.withSuperuser(async (admin) => {
      await admin.query("ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'");
      await admin.query("ALTER SYSTEM SET ssl_max_protocol_version = 'TLSv1.1'");
      await admin.query("ALTER SYSTEM SET ssl_ciphers = 'DEFAULT:@SECLEVEL=0'");
      await admin.query('SELECT pg_reload_conf()');
    });
    // Node's own defaults (minimum TLS 1.2, security level 1) would refuse the server for any client:
    // lowered for this file, so only the module's settings stand between it and TLS 1.1.
    tls.DEFAULT_MIN_VERSION = 'TLSv1';
    tls.DEFAULT_CIPHERS = 'DEFAULT:@SECLEVEL=0';
  }, 60_000);
  afterAll(async () => {
    Object.assign(tls, defaults);
    await pc?.stop();
  });

  /** The app role, verify-full, with the process's TLS defaults: once the reload has taken effect it connects. */
  const tls11Client = () => new pg.Client(pc.cluster.clientConfig());

  it('control: a raw pg client with the process defaults negotiates TLS 1.1 with the server (pg_stat_ssl says so)', async () => {
    let row: { version: string; ssl: boolean } | undefined;
    for (let tries = 0; !row; tries++) {
      const client = tls11Client();
      try {
        await client.connect();
        row = (await client.query('SELECT ssl, version FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()')).rows[0];
      } catch (error) {
        if (tries >= 50) throw error; // pg_reload_conf() only signals the postmaster: give it up to ~5 s
        await new Promise((resolve) => setTimeout(resolve, 100));
      } finally {
        await client.end().catch(() => undefined);
      }
    }
    expect(row).toEqual({ ssl: true, version: 'TLSv1.1' });
  });

  it('the module, in the same process, refuses it at startup with a TLS error, in one attempt (startupRetries: 3)', async () => {
    const proxy = await SwitchableForwarder.start(pc.cluster.facts.port); // counts the connection attempts
    const warn = jest.spyOn(Logger.prototype, 'warn');
    try {
      const url = pc.cluster.url().replace(`:${pc.cluster.facts.port}/`, `:${proxy.port}/`);
      const error = await startupError({ url, sslRootCert: pc.caPem, startupRetries: 3, appEnv: 'development' });
      expect(error).toBeInstanceOf(TlsVerificationError);
      expect(error).toMatchObject({ code: 'DB_TLS_VERIFICATION_FAILED' });
      // Node's OpenSSL offered TLS 1.2 and 1.3 only; the server answered with a protocol_version alert.
      expect(error.message).toMatch(/^TLS verification failed: the TLS handshake failed .*protocol version/s);
      expect(proxy.accepted).toBe(1);
      expect(warn.mock.calls.filter((c) => /attempt \d of/.test(String(c[0])))).toEqual([]);
    } finally {
      warn.mockRestore();
      await proxy.close();
    }
  });
});
