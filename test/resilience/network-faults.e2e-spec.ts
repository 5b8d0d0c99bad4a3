import { afterAll, afterEach, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../src/local-postgres/index.js';
import { type DemoProcess, spawnDemo } from '../support/demo-process.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { appConnections, holdLock, waitForActivity } from '../support/server-faults.js';
import { TcpFaultProxy, throughProxy } from '../support/tcp-fault-proxy.js';
import { expectAlive, productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';
import { ms, reportFigure } from './figures.js';
import { type Outcome, type RequestSpec, send, sendAll, untilExpected } from './http-load.js';
import { OUTAGE_CODES, isExpected, recovery, tally, unexpectedOutcomes } from './outcome-checks.js';
import { expectFullPoolCapacity } from './pool-capacity.js';
import { EMAIL_DOMAIN, UsersTraffic, startUsersLoad, countUsers } from './users-traffic.js';

const h = harness();
const POOL_MAX = 4;
const LIST: RequestSpec = { method: 'GET', path: '/users?status=suspended', expected: [200] };
const HEALTH: RequestSpec = { method: 'GET', path: '/health', expected: [200] };

// The proxy only touches its own sockets, so it can sit in front of the shared TLS cluster.
describe('network faults between the demo and its database (TCP fault proxy): the built demo as a process', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let proxy: TcpFaultProxy;
  let demo: DemoProcess | undefined;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
  });

  afterEach(async () => {
    await stopDemoProcess(demo);
    demo = undefined;
    await proxy?.close();
  });

  afterAll(async () => {
    await scratch?.drop();
  });

  /** A fresh proxy in front of the cluster, and the demo's settings through it. */
  const viaProxy = async (scenario: string, settings: Record<string, string>) => {
    proxy = await TcpFaultProxy.start(h.tls.facts);
    return productionEnv(throughProxy(scratch.cluster, proxy), h.caPem, scenario, settings);
  };

  it('connections dropped during load (reset with statements running; then the path refused for 1 s): only sanitized 503s, service back within 1 s', async () => {
    const settings = await viaProxy('drop', {
      DATABASE_POOL_MAX: String(POOL_MAX),
      DATABASE_CONNECT_TIMEOUT_MS: '1000',
      DATABASE_POOL_ACQUIRE_TIMEOUT_MS: '2000',
      DATABASE_STATEMENT_TIMEOUT_MS: '5000',
    });
    demo = await startDemoProcess(settings.env);
    const { traffic, outcomes, load } = startUsersLoad(demo.url(''), { concurrency: 8, timeoutMs: 15_000 });
    await sleep(500);
    // Every pool slot mid-statement when the reset comes: each request of the mix touches the users
    // table, so with it locked all POOL_MAX connections wait on the server (and the others for the pool).
    const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
    let resetAt: number;
    let reset: number;
    try {
      await waitForActivity(scratch.cluster, (rows) => rows.filter((r) => r.applicationName === settings.applicationName && r.waitEventType === 'Lock').length === POOL_MAX);
      resetAt = performance.now();
      reset = proxy.dropAll(); // every connection reset; new ones get through at once
    } finally {
      await lock.release();
    }
    await sleep(1500);
    const cutAt = performance.now();
    const cut = proxy.dropAll();
    await proxy.refuse(); // and nothing gets through for a second
    await sleep(1000);
    await proxy.pass();
    const restoredAt = performance.now();
    await sleep(2000);
    await load.stop();

    expect(reset).toBeGreaterThanOrEqual(POOL_MAX);
    expect(cut).toBeGreaterThan(0);
    expect(unexpectedOutcomes(outcomes, OUTAGE_CODES)).toEqual([]);
    const resetWindow = outcomes.filter((o) => o.endedAt >= resetAt && o.endedAt < cutAt);
    const afterReset = recovery(outcomes.filter((o) => o.endedAt < cutAt), resetAt);
    const afterCut = recovery(outcomes.filter((o) => o.endedAt >= cutAt), restoredAt);
    // The POOL_MAX requests whose statements were running lost their connections: each a sanitized 503.
    expect(tally(resetWindow)['503 DB_CONNECTION_FAILED']).toBeGreaterThanOrEqual(POOL_MAX);
    expect(afterReset!.stableAt! - resetAt).toBeLessThan(1000); // in-flight requests fail; none may after that
    expect(afterCut?.failures).toBeGreaterThan(0);
    expect(afterCut!.stableAt! - restoredAt).toBeLessThan(1000);
    expect(outcomes.filter((o) => o.startedAt > afterCut!.stableAt!).length).toBeGreaterThan(20);
    expect(await countUsers(scratch.cluster, traffic.created)).toBe(traffic.created.length);
    await expectAlive(demo);
    await expectFullPoolCapacity(scratch.cluster, settings.applicationName, POOL_MAX, demo.url(''));
    expect(demo.output()).not.toContain(EMAIL_DOMAIN);
    reportFigure('network drop', {
      connectionsReset: reset,
      failedAfterReset: afterReset!.failures,
      allSucceedingAfterResetMs: ms(afterReset!.stableAt! - resetAt),
      connectionsCut: cut,
      refusedForMs: ms(restoredAt - cutAt),
      firstSuccessAfterPathBackMs: ms(afterCut!.resumedAt! - restoredAt),
      allSucceedingAfterPathBackMs: ms(afterCut!.stableAt! - restoredAt),
      outcomes: tally(outcomes),
    });
  }, 60_000);

  it('blackhole at startup: exit 1 with DB_CONNECT_TIMEOUT within connect timeout × attempts', async () => {
    const { env } = await viaProxy('blackhole-startup', { DATABASE_CONNECT_TIMEOUT_MS: '500', DATABASE_STARTUP_RETRIES: '2' });
    await proxy.blackhole();
    const started = performance.now();
    demo = spawnDemo(env, await freePort());
    expect(await demo.exited).toEqual({ code: 1, signal: null });
    const elapsed = performance.now() - started;
    expect(proxy.accepted).toBe(3); // each attempt reached the proxy and got no answer
    expect(demo.output()).toMatch(/Database startup failed \[DB_CONNECT_TIMEOUT\]/);
    // 3 × 500 ms, two backoffs of at most 375 and 750 ms, and node's own startup.
    expect(elapsed).toBeLessThan(3 * 500 + 375 + 750 + 8000);
    reportFigure('blackhole at startup', { connectTimeoutMs: 500, attempts: proxy.accepted, exitMs: ms(elapsed) });
  }, 30_000);

  it('blackhole at runtime: requests fail with sanitized 503s within the timeouts, /health says down within its timeout, and service resumes', async () => {
    // Client-side backstop for a pooled connection that hangs: query_timeout = statement + connect timeout = 1000 ms.
    const settings = await viaProxy('blackhole-runtime', {
      DATABASE_POOL_MAX: String(POOL_MAX),
      DATABASE_CONNECT_TIMEOUT_MS: '500',
      DATABASE_STATEMENT_TIMEOUT_MS: '500',
      DATABASE_POOL_ACQUIRE_TIMEOUT_MS: '1000',
    });
    demo = await startDemoProcess(settings.env);
    const base = demo.url('');
    const warm = await sendAll(base, Array.from({ length: 8 }, () => LIST), POOL_MAX);
    expect(warm.filter((o) => !isExpected(o))).toEqual([]);
    const pooled = (await appConnections(scratch.cluster, settings.applicationName)).length;
    expect(pooled).toBeGreaterThan(0); // some requests will take a pooled connection that now hangs

    await proxy.blackhole();
    // First wave: pooled connections hang until query_timeout; the rest wait for the pool until the acquire timeout.
    const [health, ...reads] = await Promise.all([send(base, HEALTH, 10_000), ...Array.from({ length: 8 }, () => send(base, LIST, 10_000))]);
    // Second wave, once the connection attempts the first one left queued have timed out too: the hung
    // connections are gone, so each request opens a new one, which the connect timeout ends.
    await sleep(600);
    const reconnects = await sendAll(base, Array.from({ length: POOL_MAX }, () => LIST), POOL_MAX, 10_000);
    const waits = (outcomes: Outcome[]) => outcomes.map((o) => o.endedAt - o.startedAt);

    expect(unexpectedOutcomes([...reads, ...reconnects], OUTAGE_CODES)).toEqual([]);
    expect([...reads, ...reconnects].filter(isExpected)).toEqual([]);
    expect(Math.max(...waits(reads))).toBeLessThan(1000 + 1500); // query_timeout / acquire timeout, plus scheduling
    expect(reconnects.map((o) => (o.body as { code: string }).code)).toEqual(Array(POOL_MAX).fill('DB_CONNECT_TIMEOUT'));
    expect(Math.max(...waits(reconnects))).toBeLessThan(500 + 1500);
    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'error', error: { database: { status: 'down' } } });
    expect(health.endedAt - health.startedAt).toBeLessThan(1000 + 1000);

    await proxy.pass();
    const restoredAt = performance.now();
    const first = await untilExpected(base, LIST, 10_000);
    expect(first.status).toBe(200);
    expect((await sendAll(base, Array.from({ length: 12 }, () => LIST), POOL_MAX)).filter((o) => !isExpected(o))).toEqual([]);
    expect((await send(base, HEALTH, 5000)).status).toBe(200);
    await expectAlive(demo);
    reportFigure('blackhole at runtime', {
      connectTimeoutMs: 500,
      statementTimeoutMs: 500,
      acquireTimeoutMs: 1000,
      pooledConnectionsWhenCut: pooled,
      firstWave: tally(reads),
      firstWaveMs: [ms(Math.min(...waits(reads))), ms(Math.max(...waits(reads)))],
      secondWave: tally(reconnects),
      secondWaveMs: [ms(Math.min(...waits(reconnects))), ms(Math.max(...waits(reconnects)))],
      healthDownMs: ms(health.endedAt - health.startedAt),
      healthReason: (health.body as { error: { database: { message: string } } }).error.database.message,
      firstSuccessAfterPathBackMs: ms(first.endedAt - restoredAt),
    });
  }, 60_000);

  it('slow network (200 ms each way): everything works within the timeouts', async () => {
    const settings = await viaProxy('latency', { DATABASE_POOL_MAX: String(POOL_MAX) }); // default timeouts: 5 s connect, 30 s statement
    await proxy.latency(200);
    const started = performance.now();
    demo = await startDemoProcess(settings.env);
    const startupMs = performance.now() - started;
    const traffic = new UsersTraffic();
    const outcomes = await sendAll(demo.url(''), Array.from({ length: 24 }, traffic.next), POOL_MAX);
    for (const o of outcomes) traffic.record(o);
    expect(unexpectedOutcomes(outcomes)).toEqual([]);
    const health = await send(demo.url(''), HEALTH, 5000); // pooled connections: one round trip, within the 1000 ms ping timeout
    expect(health.status).toBe(200);
    expect(await countUsers(scratch.cluster, traffic.created)).toBe(traffic.created.length);
    await expectAlive(demo);
    const latencies = outcomes.map((o) => o.endedAt - o.startedAt).sort((a, b) => a - b);
    reportFigure('slow network (200 ms each way)', {
      startupMs: ms(startupMs),
      medianRequestMs: ms(latencies[latencies.length >> 1]),
      slowestRequestMs: ms(latencies[latencies.length - 1]),
      healthMs: ms(health.endedAt - health.startedAt),
    });
  }, 60_000);

  it('a TLS handshake that stalls after the TCP accept counts against the connect timeout', async () => {
    const { env } = await viaProxy('tls-stall', { DATABASE_CONNECT_TIMEOUT_MS: '1000', DATABASE_STARTUP_RETRIES: '0' });
    await proxy.stallAfterBytes(8); // the SSLRequest and the server's 'S' pass, the handshake does not
    const started = performance.now();
    demo = spawnDemo(env, await freePort());
    expect(await demo.exited).toEqual({ code: 1, signal: null });
    const elapsed = performance.now() - started;
    expect(proxy.forwarded).toEqual({ toServer: 8, toClient: 1 });
    expect(demo.output()).toMatch(/Database startup failed \[DB_CONNECT_TIMEOUT\]/);
    expect(elapsed).toBeLessThan(1000 + 8000); // one attempt, and node's own startup
    reportFigure('TLS handshake stalled', { connectTimeoutMs: 1000, exitMs: ms(elapsed) });
  }, 30_000);
});
