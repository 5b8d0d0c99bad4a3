import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { harness, scratchDatabase } from '../support/harness.js';

const h = harness();
const APP = join(import.meta.dirname, 'exit-after-close-app.mjs');
// Generous for a loaded machine: a process with nothing left to do ends in milliseconds after close().
const EXIT_WITHIN_MS = 15_000;

/**
 * A library that leaves a timer or socket behind keeps its host process alive after app.close(): a
 * Nest app that ends by letting the event loop drain (a script, a CLI, a worker, a test runner) would
 * hang. pg arms a client-side timer for every query, and clears it only through the query's callback,
 * which a COPY TO stream never calls: each copyTo left one armed for 24 days.
 */
describe('after app.close() the process ends by itself, whatever it used (built module in a child process)', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;

  beforeAll(async () => {
    if (!existsSync(join(import.meta.dirname, '..', '..', 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    scratch = await scratchDatabase(h.tls);
    const client = new pg.Client({ ...scratch.cluster.clientConfig(), ssl: { ca: h.caPem } });
    await client.connect();
    await client.query('CREATE TABLE items (id int PRIMARY KEY, label text NOT NULL)');
    await client.end();
  });
  afterAll(() => scratch?.drop());

  it('queries, reads sharing connections, transactions, streams, COPY in and out (completed and broken off), aborts, timeouts, LISTEN', async () => {
    const child = spawn(process.execPath, [APP], { env: { ...process.env, DATABASE_URL: scratch.cluster.url(), CA_PEM: h.caPem }, stdio: ['ignore', 'pipe', 'inherit'] });
    let output = '';
    child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    const closed = new Promise<void>((resolve) => child.stdout!.on('data', () => output.includes('closed\n') && resolve()));
    await Promise.race([closed, exited]);
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([exited, new Promise<'still running'>((resolve) => (timer = setTimeout(() => resolve('still running'), EXIT_WITHIN_MS)))]);
    clearTimeout(timer);
    child.kill('SIGKILL');
    expect({ output, code }).toEqual({ output: 'closed\n', code: 0 });
  }, 60_000);
});
