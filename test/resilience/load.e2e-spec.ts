import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { performance } from 'node:perf_hooks';
import { harness, scratchDatabase } from '../support/harness.js';
import { appConnections } from '../support/server-faults.js';
import { type DemoSettings, productionEnv, stopDemoProcess } from './demo-under-test.js';
import { ms, reportFigure } from './figures.js';
import { type HeapProbedDemo, startHeapProbedDemo } from './heap-probed-demo.js';
import { LoadRun, type Outcome, sendAll } from './http-load.js';
import { isExpected, tally } from './outcome-checks.js';
import { expectFullPoolCapacity } from './pool-capacity.js';
import { UsersTraffic, countUsers } from './users-traffic.js';

const h = harness();
// ~16 s at ~1200 requests/s on two cores (a minute when they are shared with other runs);
// RESILIENCE_LOAD_REQUESTS sets another count.
const REQUESTS = Number(process.env.RESILIENCE_LOAD_REQUESTS) || 20_000;
const CONCURRENCY = 64;
const WARM_UP_BATCH = 1_000;
const WARM_UP_BATCHES = 8;
const POOL_MAX = 10;

// The built demo as a process with a heap probe preloaded: the heap measured is the app's alone.
describe('bounded load against the demo (loopback)', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let settings: DemoSettings;
  let demo: HeapProbedDemo;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    settings = productionEnv(scratch.cluster, h.caPem, 'load', { DATABASE_POOL_MAX: String(POOL_MAX) });
    demo = await startHeapProbedDemo(settings.env);
  }, 60_000);

  afterAll(async () => {
    await stopDemoProcess(demo);
    await scratch?.drop();
  });

  /** Runs `count` requests of the mix; keeps counters and the first unexpected outcomes only. */
  async function run(traffic: UsersTraffic, count: number) {
    let remaining = count;
    const statuses: Record<string, number> = {};
    const unexpected: Outcome[] = [];
    const latencies = new Float64Array(count);
    let answered = 0;
    const started = performance.now();
    await new LoadRun(demo.url(''), {
      concurrency: CONCURRENCY,
      timeoutMs: 15_000,
      next: () => (remaining-- > 0 ? traffic.next() : undefined),
      onOutcome: (o) => {
        traffic.record(o);
        latencies[answered++] = o.endedAt - o.startedAt;
        const key = Object.keys(tally([o]))[0];
        statuses[key] = (statuses[key] ?? 0) + 1;
        if (!isExpected(o) && unexpected.length < 20) unexpected.push(o);
      },
    }).done();
    const elapsed = performance.now() - started;
    latencies.sort();
    return { statuses, unexpected, elapsed, p50: latencies[Math.floor(count * 0.5)], p99: latencies[Math.floor(count * 0.99)], max: latencies[count - 1] };
  }

  it(`${REQUESTS} requests at concurrency ${CONCURRENCY}: no unexpected answer, heap back within 10 % of the warmed-up heap, no leaked client`, async () => {
    // Keeps at most 1000 ids: reads and updates cycle over them, the generator's memory stays flat.
    const traffic = new UsersTraffic(['create', 'read', 'read', 'update', 'list', 'read'], 1000);
    // Warm-up until the heap settles (JIT, connection pools): batches until one moves it by less than 2 %.
    let heapAfterWarmUp = await demo.heapUsed();
    let warmUpRequests = 0;
    for (let batch = 1; batch <= WARM_UP_BATCHES; batch++) {
      const warm = await run(traffic, WARM_UP_BATCH);
      expect(warm.unexpected).toEqual([]);
      warmUpRequests += WARM_UP_BATCH;
      const heap = await demo.heapUsed();
      const moved = Math.abs(heap - heapAfterWarmUp) / heapAfterWarmUp;
      heapAfterWarmUp = heap;
      if (batch > 1 && moved < 0.02) break;
    }

    const result = await run(traffic, REQUESTS);
    const heapAfterRun = await demo.heapUsed();

    expect(result.unexpected).toEqual([]);
    expect(Object.values(result.statuses).reduce((a, b) => a + b, 0)).toBe(REQUESTS);
    expect(heapAfterRun).toBeLessThanOrEqual(heapAfterWarmUp * 1.1);
    expect(await countUsers(scratch.cluster, traffic.created)).toBe(traffic.created.length);
    const connections = await appConnections(scratch.cluster, settings.applicationName);
    expect(connections.length).toBeLessThanOrEqual(POOL_MAX);
    expect(connections.filter((c) => c.state !== 'idle')).toEqual([]);
    await expectFullPoolCapacity(scratch.cluster, settings.applicationName, POOL_MAX, demo.url(''));
    // Production logs: nothing went wrong, so no warning or error was logged.
    expect(demo.output()).not.toMatch(/"level":"(error|warn)"/);
    reportFigure('load', {
      requests: REQUESTS,
      warmUpRequests,
      concurrency: CONCURRENCY,
      seconds: Math.round(result.elapsed / 100) / 10,
      perSecond: Math.round(REQUESTS / (result.elapsed / 1000)),
      p50Ms: ms(result.p50),
      p99Ms: ms(result.p99),
      maxMs: ms(result.max),
      statuses: result.statuses,
      heapAfterWarmUpMb: Math.round(heapAfterWarmUp / 2 ** 20),
      heapAfterRunMb: Math.round(heapAfterRun / 2 ** 20),
      heapGrowthPercent: Math.round((heapAfterRun / heapAfterWarmUp - 1) * 1000) / 10,
    });
    // And it still serves afterwards.
    expect((await sendAll(demo.url(''), Array.from({ length: 20 }, traffic.next), 4)).filter((o) => !isExpected(o))).toEqual([]);
  }, 180_000);
});
