import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import {
  ConnectTimeoutError,
  DatabaseService,
  ReadOnlyTransactionError,
  ServerRoleMismatchError,
  TlsVerificationError,
  sql,
} from '../../src/index.js';
import { freePort } from '../../src/local-postgres/index.js';
import { type DatabaseApp, startDatabaseApp, startupError } from '../support/database-app.js';
import { type ReplicationPair, startReplicationPair } from '../support/replication-pair.js';
import { startSilentListener } from '../support/tls-terminating-proxy.js';

// The primary also listens on 127.0.0.3, a name its certificate (127.0.0.1, localhost) does not carry.
const UNNAMED = '127.0.0.3';

describe("host lists and target_session_attrs, with libpq's meanings, on a primary and its streaming standby", () => {
  let pair: ReplicationPair;
  let deadPort: number;
  let url: (hosts: string[], params?: Record<string, string>) => string;
  let primaryAt: string;
  let standbyAt: string;

  beforeAll(async () => {
    pair = await startReplicationPair({ listen_addresses: `'127.0.0.1,${UNNAMED}'` });
    deadPort = await freePort();
    const f = pair.primary.facts;
    primaryAt = `127.0.0.1:${f.port}`;
    standbyAt = `127.0.0.2:${pair.standby.facts.port}`;
    url = (hosts, params = {}) => {
      const query = new URLSearchParams(params).toString();
      return `postgresql://${f.user}:${encodeURIComponent(f.password)}@${hosts.join(',')}/${f.database}${query ? `?${query}` : ''}`;
    };
  }, 60_000);

  afterAll(() => pair?.stop());

  /** Where a fresh app's first connection landed. */
  async function landsOn(hosts: string[], params: Record<string, string> = {}): Promise<string> {
    const started = await startDatabaseApp({ url: url(hosts, params), sslRootCert: pair.caPem, startupRetries: 0 });
    try {
      const server = started.db.lastServer!;
      return `${server.host}:${server.port}`;
    } finally {
      await started.close();
    }
  }

  it('hosts are tried in order: a refused first host is skipped', async () => {
    expect(await landsOn([`127.0.0.1:${deadPort}`, primaryAt])).toBe(primaryAt);
    expect(await landsOn([standbyAt, primaryAt])).toBe(standbyAt); // target any: the first that answers
  });

  it('a host that never answers costs its own connect timeout, then the next is tried; the acquire timeout bounds the whole', async () => {
    const silent = await startSilentListener();
    try {
      const t0 = performance.now();
      const started = await startDatabaseApp({ url: url([`127.0.0.1:${silent.port}`, primaryAt]), sslRootCert: pair.caPem, connectTimeoutMs: 500, startupRetries: 0 });
      const elapsed = performance.now() - t0;
      await started.close();
      expect(`${started.db.lastServer?.host}:${started.db.lastServer?.port}`).toBe(primaryAt);
      expect(elapsed).toBeGreaterThanOrEqual(450);
      expect(elapsed).toBeLessThan(2500);

      const t1 = performance.now();
      const error = await startupError({
        url: url([`127.0.0.1:${silent.port}`, `127.0.0.1:${silent.port}`, `127.0.0.1:${silent.port}`, primaryAt]),
        sslRootCert: pair.caPem,
        connectTimeoutMs: 500,
        acquireTimeoutMs: 800,
        startupRetries: 0,
      });
      expect(error).toBeInstanceOf(ConnectTimeoutError);
      expect(performance.now() - t1).toBeLessThan(2000); // not 3 × 500 ms and then the primary
    } finally {
      await silent.close();
    }
  });

  it('each host is verified against its own name: one whose certificate does not name it is skipped', async () => {
    expect(await landsOn([`${UNNAMED}:${pair.primary.facts.port}`, standbyAt])).toBe(standbyAt);
    // Alone, or next to hosts that only refuse, the verification failure is what is reported.
    const error = await startupError({ url: url([`${UNNAMED}:${pair.primary.facts.port}`, `127.0.0.1:${deadPort}`]), sslRootCert: pair.caPem, startupRetries: 0 });
    expect(error).toBeInstanceOf(TlsVerificationError);
    expect(error.message).toContain('does not name this host');
  });

  it.each([
    ['read-write', ['standby', 'primary'], 'primary'],
    ['primary', ['standby', 'primary'], 'primary'],
    ['read-only', ['primary', 'standby'], 'standby'],
    ['standby', ['primary', 'standby'], 'standby'],
    ['prefer-standby', ['primary', 'standby'], 'standby'],
    ['any', ['primary', 'standby'], 'primary'],
  ])('target_session_attrs=%s over %j reaches the %s', async (target, hosts, expected) => {
    const at = (server: string) => (server === 'primary' ? primaryAt : standbyAt);
    expect(await landsOn(hosts.map(at), { target_session_attrs: target })).toBe(at(expected));
  });

  it('prefer-standby takes the primary when no standby answers; standby alone then fails', async () => {
    expect(await landsOn([primaryAt, `127.0.0.1:${deadPort}`], { target_session_attrs: 'prefer-standby' })).toBe(primaryAt);
    const error = await startupError({ url: url([primaryAt, `127.0.0.1:${deadPort}`], { target_session_attrs: 'standby' }), sslRootCert: pair.caPem, startupRetries: 0 });
    expect(error).toBeInstanceOf(ServerRoleMismatchError);
    expect(error.message).toBe('no server in DATABASE_URL is a standby: 1 reached but of another kind, 1 not reachable');
  });

  it('every new connection runs the rules: the pool never holds a connection to the wrong kind of server', async () => {
    const started = await startDatabaseApp({ url: url([standbyAt, primaryAt], { target_session_attrs: 'read-write' }), sslRootCert: pair.caPem, poolMax: 6 });
    try {
      const db = started.app.get(DatabaseService);
      const servers = await Promise.all(Array.from({ length: 6 }, () => db.transaction((tx) => tx.fetchval<string>('SELECT host(inet_server_addr()) FROM pg_sleep(0.05)'))));
      expect(new Set(servers)).toEqual(new Set(['127.0.0.1']));
      expect(started.db.stats().total).toBe(6);
    } finally {
      await started.close();
    }
  });

  it('load_balance_hosts=random spreads new connections over the hosts', async () => {
    const started = await startDatabaseApp({ url: url([primaryAt, standbyAt], { load_balance_hosts: 'random' }), sslRootCert: pair.caPem, poolMax: 20 });
    try {
      const db = started.app.get(DatabaseService);
      const servers = await Promise.all(Array.from({ length: 20 }, () => db.transaction((tx) => tx.fetchval<string>('SELECT host(inet_server_addr()) FROM pg_sleep(0.05)'))));
      expect(new Set(servers)).toEqual(new Set(['127.0.0.1', '127.0.0.2'])); // all 20 on one host: p = 2^-19
    } finally {
      await started.close();
    }
  });
});

describe('a read-write connection whose server stops accepting writes (a demoted primary)', () => {
  let pair: ReplicationPair;
  let started: DatabaseApp;
  let db: DatabaseService;

  const setReadOnly = async (on: boolean) => {
    await pair.primary.withSuperuser(async (admin) => {
      await admin.query(on ? 'ALTER SYSTEM SET default_transaction_read_only = on' : 'ALTER SYSTEM RESET default_transaction_read_only');
      await admin.query('SELECT pg_reload_conf()');
    });
    await new Promise((resolve) => setTimeout(resolve, 300)); // backends re-read the configuration between statements
  };

  beforeAll(async () => {
    pair = await startReplicationPair();
    await pair.primary.withSuperuser((admin) => admin.query(`CREATE TABLE marks (id int); GRANT ALL ON marks TO ${pair.primary.facts.user}`), pair.primary.facts.database);
    started = await startDatabaseApp({ url: pair.primary.url({ target_session_attrs: 'read-write' }), sslRootCert: pair.caPem, poolMax: 1, startupRetries: 0 });
    db = started.app.get(DatabaseService);
  }, 60_000);

  afterAll(async () => {
    await started?.close();
    await pair?.stop();
  });

  it('the write fails with DB_READ_ONLY and evicts the connection; new ones are refused until the server accepts writes again, then it recovers without a restart', async () => {
    expect(await db.execute(sql`INSERT INTO marks VALUES (${1})`)).toBe(1);
    const assertions = started.db.stats().tlsAssertionsPassed;
    await setReadOnly(true);
    try {
      await expect(db.execute(sql`INSERT INTO marks VALUES (${2})`)).rejects.toBeInstanceOf(ReadOnlyTransactionError);
      expect(started.db.stats().total).toBe(0); // evicted, not kept for the next caller
      const refused = await db.execute(sql`INSERT INTO marks VALUES (${3})`).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(ServerRoleMismatchError);
      expect((refused as Error).message).toBe('no server in DATABASE_URL is a server that accepts writes: 1 reached but of another kind');
    } finally {
      await setReadOnly(false);
    }
    expect(await db.execute(sql`INSERT INTO marks VALUES (${4})`)).toBe(1);
    expect(started.db.stats().tlsAssertionsPassed).toBeGreaterThan(assertions);
    expect(await db.fetch('SELECT id FROM marks ORDER BY id')).toEqual([{ id: 1 }, { id: 4 }]);
  });
});
