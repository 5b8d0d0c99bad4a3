import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { get } from 'node:http';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { harness, scratchDatabase } from '../support/harness.js';
import { holdLock, waitForActivity } from '../support/server-faults.js';
import { productionEnv, startDemoProcess, stopDemoProcess } from './demo-under-test.js';

const h = harness();
const SHUTDOWN_TIMEOUT_MS = 2000;
// Signal delivery, the pool's end after the deadline, process exit: what a loaded machine adds.
const MARGIN_MS = 500;

/**
 * One DATABASE_SHUTDOWN_TIMEOUT_MS budget covers the whole shutdown: the HTTP server waiting for its
 * requests and the pool draining. With a request stuck on the database, the process still ends
 * within the budget (it used to spend it twice: HTTP deadline, then the pool's own).
 */
describe('a request stuck on the database: SIGTERM ends the process within DATABASE_SHUTDOWN_TIMEOUT_MS', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
  });
  afterAll(() => scratch?.drop());

  const waitUntilBlocked = (applicationName: string) =>
    waitForActivity(scratch.cluster, (rows) => rows.some((r) => r.applicationName === applicationName && r.state === 'active'));

  it('the demo (its own signal handler): a list request blocked behind a table lock', async () => {
    const settings = productionEnv(scratch.cluster, h.caPem, 'budget', { DATABASE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS) });
    const demo = await startDemoProcess(settings.env); // creates the users table
    const held = await holdLock(scratch.cluster, scratch.cluster.facts.database, 'users');
    try {
      const stuck = fetch(demo.url('/users?status=active')).then((r) => r.status, () => 'network error');
      await waitUntilBlocked(settings.applicationName);
      const t0 = performance.now();
      demo.child.kill('SIGTERM');
      const exit = await demo.exited;
      const elapsed = performance.now() - t0;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
      expect(elapsed).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_MS - 50); // it did wait for the request
      expect(['network error', 503]).toContain(await stuck);
    } finally {
      await held.release();
      await stopDemoProcess(demo);
    }
  });

  it('a quick-start app (enableShutdownHooks, no handler of its own): a request sleeping in the database', async () => {
    const applicationName = `budget-quickstart-${process.pid}`;
    const child = spawn(process.execPath, [join(import.meta.dirname, '..', 'startup', 'quick-start-app.mjs')], {
      env: {
        PATH: process.env.PATH ?? '',
        APP_ENV: 'production',
        DATABASE_URL: scratch.cluster.url(),
        DATABASE_SSL_ROOT_CERT: h.caPath,
        DATABASE_APPLICATION_NAME: applicationName,
        DATABASE_SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          const match = /Listening on (\d+)/.exec(output);
          if (match) resolve(Number(match[1]));
        });
        void exited.then(() => reject(new Error(`the app exited before listening:\n${output}`)));
      });
      // Connection: close, as the demo sends after a signal: an idle keep-alive socket would hold Nest's HTTP close open.
      const stuck = new Promise<number | string>((resolve) =>
        get({ host: '127.0.0.1', port, path: '/sleep', agent: false }, (response) => {
          response.resume();
          resolve(response.statusCode ?? 0);
        }).on('error', () => resolve('network error')),
      );
      await waitUntilBlocked(applicationName);
      const t0 = performance.now();
      child.kill('SIGTERM');
      await exited;
      const elapsed = performance.now() - t0;
      expect(elapsed).toBeLessThan(SHUTDOWN_TIMEOUT_MS + MARGIN_MS);
      expect(elapsed).toBeGreaterThanOrEqual(SHUTDOWN_TIMEOUT_MS - 50);
      expect(await stuck).toBe(503); // the module closed the stuck connection at the deadline; the filter answered
    } finally {
      child.kill('SIGKILL');
    }
  });
});
