import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { Controller, Get, type INestApplication, Module, Param, Res } from '@nestjs/common';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { DatabaseService, RequestSignal, SecureDatabaseModule } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';

const h = harness();

/** What the quick route saw: its signal, and the Node response (to wait for its 'close'). */
const quickCalls: Array<{ signal: AbortSignal; res: { closed: boolean } }> = [];

@Controller('slow')
class SlowController {
  constructor(private readonly db: DatabaseService) {}

  /** Runs 30 s unless cancelled; the tag (letters and digits only) finds it in pg_stat_activity. */
  @Get(':tag')
  async sleep(@Param('tag') tag: string, @RequestSignal() signal: AbortSignal): Promise<{ done: boolean }> {
    if (!/^[a-z0-9]+$/.test(tag)) throw new Error('bad tag');
    await this.db.fetchval(`SELECT pg_sleep(30), '${tag}'`, [], { signal });
    return { done: true };
  }

  /** Finishes normally: its signal must not abort when the response completes. */
  @Get('quick/:n')
  async quick(
    @Param('n') n: string,
    @RequestSignal() signal: AbortSignal,
    @Res({ passthrough: true }) res: { raw?: { closed: boolean }; closed: boolean },
  ): Promise<{ aborted: boolean; value: number }> {
    quickCalls.push({ signal, res: res.raw ?? res });
    const value = await this.db.fetchval<number>('SELECT $1::int', [Number(n)], { signal });
    return { aborted: signal.aborted, value };
  }
}

async function until(condition: () => Promise<boolean>, timeoutMs: number): Promise<number> {
  const started = performance.now();
  while (!(await condition())) {
    if (performance.now() - started > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await sleep(10);
  }
  return performance.now() - started;
}

describe.each(['express', 'fastify'] as const)('@RequestSignal() on %s', (platform) => {
  let app: INestApplication;
  let admin: pg.Client;
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let port: number;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    @Module({
      imports: [SecureDatabaseModule.forRoot({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 2 })],
      controllers: [SlowController],
    })
    class AppModule {}
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = platform === 'fastify' ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter(), { logger: false }) : moduleRef.createNestApplication({ logger: false });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
    admin = await scratch.cluster.superuserClient(scratch.cluster.facts.database);
  });

  afterAll(async () => {
    await admin?.end();
    await app?.close();
    await scratch?.drop();
  });

  const running = async (tag: string) =>
    (
      await admin.query("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid() AND strpos(query, $1) > 0", [
        tag,
      ])
    ).rowCount === 1;

  it('a client that disconnects mid-request stops its statement on the server', async () => {
    const tag = `gone${platform}${Math.floor(Math.random() * 1e9)}`;
    const req = httpRequest({ host: '127.0.0.1', port, path: `/slow/${tag}` });
    req.on('error', () => undefined); // the socket we destroy
    req.end();
    await until(() => running(tag), 5_000);
    req.destroy();
    const goneAfterMs = await until(async () => !(await running(tag)), 2_000);
    expect(goneAfterMs).toBeLessThan(2_000);
    const db = app.get(DatabaseService);
    await until(async () => db.stats().inFlight === 0, 2_000);
    expect(await db.fetchval('SELECT 5')).toBe(5);
  });

  it('a request that completes is not aborted', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      httpRequest({ host: '127.0.0.1', port, path: '/slow/quick/7' }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve(text));
      })
        .on('error', reject)
        .end();
    });
    expect(JSON.parse(body)).toEqual({ aborted: false, value: 7 });
    // The response's 'close' after it finished (Node emits it either way) does not abort.
    const { signal, res } = quickCalls.at(-1)!;
    await until(async () => res.closed, 2_000);
    expect(signal.aborted).toBe(false);
  });
});
