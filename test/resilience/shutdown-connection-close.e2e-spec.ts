import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type Socket, connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { DemoProcess } from '../support/demo-process.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { holdLock, waitForActivity } from '../support/server-faults.js';
import { type DemoSettings, productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';

const h = harness();

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/**
 * One keep-alive HTTP/1.1 connection written to by hand, so the test decides which request goes out
 * before and which after the signal on the same socket, and reads every response header as sent.
 */
class RawHttpConnection {
  private buffer = Buffer.alloc(0);
  private readonly responses: RawResponse[] = [];
  private waiter?: () => void;
  ended = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.parse();
      this.waiter?.();
    });
    socket.on('close', () => {
      this.ended = true;
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static open(port: number): Promise<RawHttpConnection> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () => resolve(new RawHttpConnection(socket)));
      socket.once('error', reject);
    });
  }

  get(path: string): void {
    this.socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  }

  /** The `n`th response (1-based) on this connection, once complete. */
  async response(n: number, withinMs = 15_000): Promise<RawResponse> {
    const deadline = performance.now() + withinMs;
    while (this.responses.length < n) {
      if (this.ended || performance.now() > deadline) throw new Error(`response ${n} never came (${this.responses.length} so far, connection ${this.ended ? 'closed' : 'open'})`);
      await new Promise<void>((resolve) => {
        this.waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return this.responses[n - 1];
  }

  /** Resolves once the server closed the connection. */
  async closed(withinMs = 15_000): Promise<void> {
    for (const deadline = performance.now() + withinMs; !this.ended; await sleep(10)) {
      if (performance.now() > deadline) throw new Error('the server kept the connection open');
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private parse(): void {
    for (;;) {
      const end = this.buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [statusLine, ...lines] = this.buffer.subarray(0, end).toString('latin1').split('\r\n');
      const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
      const length = Number(headers['content-length']);
      if (!Number.isInteger(length)) throw new Error(`expected a Content-Length response: ${statusLine}`);
      if (this.buffer.length < end + 4 + length) return;
      this.responses.push({ status: Number(statusLine.split(' ')[1]), headers, body: this.buffer.subarray(end + 4, end + 4 + length).toString() });
      this.buffer = this.buffer.subarray(end + 4 + length);
    }
  }
}

/** Whether a new TCP connection to `port` is refused. */
const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code === 'ECONNREFUSED'));
  });

/**
 * src/main.ts: from SIGTERM on, every response closes its connection, so a keep-alive connection
 * cannot keep bringing requests while the server drains. A request on the same connection before the
 * signal is kept alive; one after it is answered (200) with Connection: close and the socket closes;
 * new connections are refused.
 */
describe('the demo answers with Connection: close from SIGTERM on', () => {
  const PATH = '/users?status=suspended&limit=1';
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let settings: DemoSettings;
  let demo: DemoProcess;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    // A long budget: the drain waits for the request the test holds behind a lock, never the deadline.
    settings = productionEnv(scratch.cluster, h.caPem, 'connection-close', { DATABASE_SHUTDOWN_TIMEOUT_MS: '20000' });
    demo = await startDemoProcess(settings.env);
  }, 60_000);

  afterAll(async () => {
    await stopDemoProcess(demo);
    await scratch?.drop();
  });

  const lockWaiters = (n: number) =>
    waitForActivity(scratch.cluster, (rows) => rows.filter((r) => r.applicationName === settings.applicationName && r.waitEventType === 'Lock').length === n);

  it('one keep-alive connection: keep-alive before the signal, Connection: close after it, then closed; new connections refused; exit 0', async () => {
    const http = await RawHttpConnection.open(demo.port);
    try {
      http.get(PATH);
      const before = await http.response(1);
      expect({ status: before.status, connection: before.headers.connection }).toEqual({ status: 200, connection: 'keep-alive' });

      const lock = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
      try {
        http.get(PATH); // in flight at the signal: keeps the connection busy, so the drain neither closes it nor ends
        await lockWaiters(1);
        demo.child.kill('SIGTERM');
        await demo.waitFor(/SIGTERM: draining/, 10_000);
        for (const deadline = performance.now() + 5000; !(await refused(demo.port)); await sleep(20)) {
          if (performance.now() > deadline) throw new Error('the demo still accepts new connections 5 s after SIGTERM');
        }
        http.get(PATH); // a new request on the open connection, after the signal
        await lockWaiters(2);
      } finally {
        await lock.release();
      }
      const inFlight = await http.response(2);
      const after = await http.response(3);
      expect({ status: inFlight.status, connection: inFlight.headers.connection }).toEqual({ status: 200, connection: 'keep-alive' });
      expect({ status: after.status, connection: after.headers.connection }).toEqual({ status: 200, connection: 'close' });
      expect(JSON.parse(after.body)).toMatchObject({ items: [] });
      await http.closed();
    } finally {
      http.destroy();
    }
    expect(await demo.exited).toEqual({ code: 0, signal: null });
  }, 60_000);
});
