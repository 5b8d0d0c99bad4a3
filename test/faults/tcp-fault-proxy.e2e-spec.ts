import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { harness } from '../support/harness.js';
import { waitForActivity } from '../support/server-faults.js';
import { TcpFaultProxy, throughProxy } from '../support/tcp-fault-proxy.js';

// The proxy only ever touches its own sockets, so it can sit in front of the shared TLS cluster.
describe('TcpFaultProxy in front of a TLS cluster', () => {
  const h = harness();
  let proxy: TcpFaultProxy;
  const clients: pg.Client[] = [];

  beforeEach(async () => {
    proxy = await TcpFaultProxy.start(h.tls.facts);
  });

  afterEach(async () => {
    await proxy.close();
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
  });

  /** A verify-full client through the proxy; its 'error' events are kept, never thrown. */
  const clientViaProxy = (config: pg.ClientConfig = {}) => {
    const client = new pg.Client({ ...throughProxy(h.tls, proxy).clientConfig(), ...config });
    client.on('error', () => undefined);
    clients.push(client);
    return client;
  };
  const connected = async (config?: pg.ClientConfig) => {
    const client = clientViaProxy(config);
    await client.connect();
    return client;
  };
  const until = async (condition: () => boolean) => {
    for (const deadline = performance.now() + 5000; !condition(); await sleep(10)) {
      if (performance.now() > deadline) throw new Error('condition not met within 5 s');
    }
  };
  const pendingAfter = (ms: number, promise: Promise<unknown>) =>
    Promise.race([promise.then(() => 'settled', () => 'settled'), sleep(ms).then(() => 'pending')]);

  it('refuses a target other than 127.0.0.1', async () => {
    await expect(TcpFaultProxy.start({ host: 'localhost', port: h.tls.facts.port })).rejects.toThrow('only forwards to 127.0.0.1');
  });

  it('pass: forwards a verified TLS session and counts it', async () => {
    const client = await connected();
    const { rows } = await client.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    expect(rows[0].ssl).toBe(true);
    expect(proxy.port).not.toBe(h.tls.facts.port);
    expect(proxy.accepted).toBe(1);
    expect(proxy.open).toBe(1);
    expect(proxy.forwarded.toServer).toBeGreaterThan(0);
    expect(proxy.forwarded.toClient).toBeGreaterThan(0);
    await client.end();
    await until(() => proxy.open === 0);
  });

  it('latency: a round trip takes at least twice the delay, and large results arrive intact', async () => {
    const client = await connected();
    await proxy.latency(100);
    const started = performance.now();
    await client.query('SELECT 1');
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
    // Many TLS records, each delayed: any reordering would break the TLS stream.
    const { rows } = await client.query("SELECT repeat('x', 500000) AS x");
    expect(rows[0].x).toHaveLength(500000);
  });

  it('dropAll: an in-flight query fails, an idle client errors, and both backends go away', async () => {
    const applicationName = `fault-proxy-drop-${process.pid}`;
    // So the backend running pg_sleep notices its client is gone without waiting for the sleep to end.
    const config = { application_name: applicationName, options: '-c client_connection_check_interval=100' };
    const idle = await connected(config);
    const busy = await connected(config);
    const idleError = once(idle, 'error');
    const inFlight = busy.query('SELECT pg_sleep(30)');
    await waitForActivity(h.tls, (rows) => rows.some((r) => r.applicationName === applicationName && r.state === 'active'));

    expect(proxy.dropAll()).toBe(2);
    expect(proxy.open).toBe(0);
    // A reset, as a dropped network path looks to a peer.
    await expect(inFlight).rejects.toMatchObject({ code: 'ECONNRESET' });
    await expect(idleError).resolves.toEqual([expect.objectContaining({ code: 'ECONNRESET' })]);
    await waitForActivity(h.tls, (rows) => !rows.some((r) => r.applicationName === applicationName));
    await expect(connected().then(async (c) => (await c.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
  });

  it('blackhole: a new connect is accepted but hangs until connectionTimeoutMillis', async () => {
    await proxy.blackhole();
    const started = performance.now();
    await expect(clientViaProxy({ connectionTimeoutMillis: 400 }).connect()).rejects.toThrow('timeout expired');
    expect(performance.now() - started).toBeLessThan(5000);
    expect(proxy.accepted).toBe(1);
    expect(proxy.forwarded).toEqual({ toServer: 0, toClient: 0 });
    await until(() => proxy.open === 0);
  });

  it('blackhole: an open connection stops forwarding, and resumes on pass', async () => {
    const client = await connected();
    await proxy.blackhole();
    const query = client.query('SELECT 42 AS answer');
    expect(await pendingAfter(300, query)).toBe('pending');
    await proxy.pass();
    await expect(query).resolves.toMatchObject({ rows: [{ answer: 42 }] });
  });

  it('refuse: connects get ECONNREFUSED, open connections keep working, pass listens on the same port again', async () => {
    const port = proxy.port;
    const open = await connected();
    await proxy.refuse();
    await expect(clientViaProxy().connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(open.query('SELECT 1 AS one')).resolves.toMatchObject({ rows: [{ one: 1 }] });
    await proxy.pass();
    expect(proxy.port).toBe(port);
    await expect(connected().then(async (c) => (await c.query('SELECT 1 AS one')).rows)).resolves.toEqual([{ one: 1 }]);
  });

  it('stallAfterBytes(8): SSLRequest and its answer pass, then the TLS handshake stalls until the connect times out', async () => {
    await proxy.stallAfterBytes(8);
    const started = performance.now();
    await expect(clientViaProxy({ connectionTimeoutMillis: 400 }).connect()).rejects.toThrow('timeout expired');
    expect(performance.now() - started).toBeLessThan(5000);
    // 8 bytes of SSLRequest up, the server's one-byte 'S' down; the ClientHello never reached the server.
    expect(proxy.forwarded).toEqual({ toServer: 8, toClient: 1 });
  });

  it('close: drops open connections and stops listening', async () => {
    const client = await connected();
    const clientError = once(client, 'error');
    await proxy.close();
    await expect(clientError).resolves.toEqual([expect.objectContaining({ code: 'ECONNRESET' })]);
    expect(proxy.open).toBe(0);
    await expect(clientViaProxy().connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    await expect(proxy.close()).resolves.toBeUndefined();
  });
});
