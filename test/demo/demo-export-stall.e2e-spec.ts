import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import type { Server } from 'node:http';
import { type AddressInfo, type Socket, connect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { DatabaseService, sql } from '../../src/index.js';
import { LogCapture } from '../support/log-capture.js';
import { type DemoApp, startDemoOnScratch } from './demo-app.js';

const IDLE_MS = 500;
// Far more than loopback's socket buffers hold (a few MB each way), so a client that reads nothing stalls the export.
const ROWS = 200_000;

/** Polls `condition` (every 20 ms) until it holds; fails after `timeoutMs`. */
async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  for (const deadline = performance.now() + timeoutMs; !condition(); await sleep(20)) {
    if (performance.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
  }
}

describe('demo: clients that stop reading GET /users/export (pool of 2)', () => {
  const logs = new LogCapture();
  let app: INestApplication;
  let db: DatabaseService;
  let demo: DemoApp;

  beforeAll(async () => {
    demo = await startDemoOnScratch(
      {
        DATABASE_POOL_MAX: '2',
        // How long the exports take to fill the sockets' buffers depends on the machine's load: the list
        // request may wait for that and the deadline, but without the deadline it would wait out this too.
        DATABASE_POOL_ACQUIRE_TIMEOUT_MS: '20000',
        DATABASE_STREAM_IDLE_TIMEOUT_MS: String(IDLE_MS),
      },
      logs,
    );
    ({ app } = demo);
    db = app.get(DatabaseService);
    await db.execute(sql`INSERT INTO users (email, name, status) SELECT 'stall-' || g || '@example.com', 'Stalled Reader ' || g, 'inactive' FROM generate_series(1, ${ROWS}::int) g`);
  }, 120_000);

  afterAll(() => demo?.close());

  it('three stalled downloads: other requests still succeed, each stalled export is ended after the idle deadline, readiness is up', async () => {
    const server: Server = app.getHttpServer().listen(0);
    const clients: Socket[] = [];
    try {
      // The server's end of each connection, by the client's port.
      const serverSide = new Map<number, Socket>();
      server.on('connection', (socket: Socket) => serverSide.set(socket.remotePort ?? 0, socket));
      const { port } = server.address() as AddressInfo;
      for (let i = 0; i < 3; i++) {
        const client = connect(port, '127.0.0.1');
        client.on('error', () => undefined);
        await new Promise((resolve) => client.once('connect', resolve));
        // Sends the request and never reads the body (no 'data' listener, nothing resumes the socket).
        client.write(`GET /users/export?status=inactive HTTP/1.1\r\nHost: localhost\r\n\r\n`);
        clients.push(client);
      }
      const exports = () => clients.map((c) => serverSide.get(c.localPort ?? 0));
      // Both pooled connections are held by exports whose clients stopped reading.
      await until(() => db.stats().total - db.stats().idle === 2, 10_000);

      // Meanwhile the API is served: the request waits for a connection, which the idle deadline frees
      // (before the fix it waited out the acquire timeout: 503 DB_POOL_EXHAUSTED).
      const http = request(server);
      const list = await http.get('/users?status=inactive&limit=5');
      expect({ status: list.status, code: list.body.code }).toEqual({ status: 200, code: undefined });
      expect(list.body.items).toHaveLength(5);

      // Every stalled export (the third one too, once it got a connection) is ended and its response destroyed.
      await until(() => exports().every((socket) => socket?.destroyed === true), 15_000);
      expect(logs.text().match(new RegExp(`GET /users/export stopped: the client read nothing for ${IDLE_MS} ms`, 'g'))).toHaveLength(3);
      await until(() => db.stats().total === db.stats().idle, 5000);
      expect(db.stats()).toMatchObject({ inFlight: 0, waiting: 0 });
      // Readiness is up again (while both connections were held it reported "pool exhausted").
      expect((await http.get('/health').expect(200)).body.info.database).toMatchObject({ status: 'up' });
      expect((await http.get('/users?status=inactive&limit=5').expect(200)).body.items).toHaveLength(5);
    } finally {
      for (const client of clients) client.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  }, 60_000);
});
