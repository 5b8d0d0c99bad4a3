import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort } from '../../src/local-postgres/index.js';
import type { BenchTarget } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import { BATCH_SIZE, READERS, type Reader } from '../support/bounded-reader.js';
import { type Report, fixed, whole } from '../support/report.js';

const run = promisify(execFile);
const SUPPORT = join(import.meta.dirname, '..', 'support');
const CLIENTS = 8;
const PAGE_LIMIT = 200;

export interface ReaderResult {
  reader: Reader;
  rows: number;
  /** Median over the rounds. */
  rowsPerSec: number;
  /** Client CPU (user + system) per row, median over the rounds. */
  cpuUsPerRow: number;
  rssAtStartMb: number;
  /** Highest over the rounds. */
  peakRssMb: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

export interface DemoLoadResult {
  workload: string;
  requests: number;
  seconds: number;
  rowsRead: number;
  rssAtReadyMb: number;
  peakRssMb: number;
}

export interface BoundedResults {
  streamRows: number;
  demoUsers: number;
  readers: ReaderResult[];
  demo: DemoLoadResult[];
}

/** Runs `statements` in order on a raw connection of their own (seeding, truncating). */
export async function seed(target: BenchTarget, ...statements: string[]): Promise<void> {
  const client = new pg.Client(target.rawPg);
  await client.connect();
  try {
    for (const statement of statements) await client.query(statement);
  } finally {
    await client.end();
  }
}

/** Peak and current resident memory of another process, from /proc (Linux). */
function memoryOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

async function startDemo(target: BenchTarget): Promise<{ child: ChildProcess; url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const child = spawn(process.execPath, [join(SUPPORT, 'demo-server.js')], {
    env: { ...process.env, PORT: String(port), APP_ENV: 'production', DATABASE_URL: target.url, DATABASE_SSL_ROOT_CERT: target.caPem, DATABASE_STATEMENT_TIMEOUT_MS: '600000' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('ready') && resolve());
    child.once('exit', (code) => reject(new Error(`the demo exited with ${code} before serving`)));
  });
  return {
    child,
    url: `http://127.0.0.1:${port}`,
    stop: () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('exit', () => resolve()), child.kill('SIGTERM')))),
  };
}

/** One client walking every page of active users; returns [requests, rows]. */
async function pageThrough(url: string): Promise<[number, number]> {
  let requests = 0;
  let rows = 0;
  let after: string | null = null;
  do {
    const response = await fetch(`${url}/users?status=active&limit=${PAGE_LIMIT}${after ? `&after=${after}` : ''}`);
    if (!response.ok) throw new Error(`GET /users answered ${response.status}`);
    const page = (await response.json()) as { items: unknown[]; next: string | null };
    requests++;
    rows += page.items.length;
    after = page.next;
  } while (after !== null);
  return [requests, rows];
}

/** One client reading the whole NDJSON export; returns [requests, rows]. */
async function exportAll(url: string): Promise<[number, number]> {
  const response = await fetch(`${url}/users/export?status=active`);
  if (!response.ok || !response.body) throw new Error(`GET /users/export answered ${response.status}`);
  let rows = 0;
  for await (const chunk of response.body) for (const byte of chunk as Uint8Array) if (byte === 10) rows++;
  return [1, rows];
}

async function demoLoad(target: BenchTarget, workload: string, client: (url: string) => Promise<[number, number]>): Promise<DemoLoadResult> {
  const demo = await startDemo(target);
  try {
    const { rssMb } = memoryOf(demo.child.pid!);
    const started = performance.now();
    const done = await Promise.all(Array.from({ length: CLIENTS }, () => client(demo.url)));
    const seconds = (performance.now() - started) / 1000;
    return { workload, requests: done.reduce((n, [r]) => n + r, 0), rowsRead: done.reduce((n, [, r]) => n + r, 0), seconds, rssAtReadyMb: rssMb, peakRssMb: memoryOf(demo.child.pid!).peakMb };
  } finally {
    await demo.stop();
  }
}

/**
 * Issue 18's figures: reading a big table through stream(), raw pg-query-stream and a buffered
 * fetch (limit lifted), each in a fresh process (rows/s, peak RSS); then the demo's paginated list
 * and NDJSON export under 8 concurrent clients over a large users table (the demo's peak RSS).
 */
export async function runBoundedResults(target: BenchTarget, options: BenchOptions, report: Report): Promise<BoundedResults> {
  report.line(`## Bounded results: ${whole(options.streamRows)} rows read three ways; the demo under ${CLIENTS} clients over ${whole(options.demoUsers)} users`);
  await seed(
    target,
    'DROP TABLE IF EXISTS bench_wide',
    `CREATE TABLE bench_wide AS SELECT g AS id, 'row ' || g || ' ' || repeat('x', 40) AS label, now() AS created_at FROM generate_series(1, ${options.streamRows}) g`,
    'VACUUM ANALYZE bench_wide',
  );
  // Interleaved rounds, order rotated, medians: one sample each is at the mercy of a shared machine.
  const rounds = Math.min(options.rounds, 3);
  const samples = new Map<Reader, ReaderResult[]>(READERS.map((r) => [r, []]));
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < READERS.length; i++) {
      const reader = READERS[(i + round) % READERS.length];
      const { stdout } = await run(process.execPath, [join(SUPPORT, 'bounded-reader.js'), reader], {
        env: { ...process.env, BENCH_READER_TARGET: JSON.stringify({ url: target.url, caPem: target.caPem, rawPg: target.rawPg }) },
        maxBuffer: 1024 * 1024,
      });
      const sample = JSON.parse(stdout.trim().split('\n').at(-1)!) as ReaderResult;
      samples.get(reader)!.push(sample);
      report.line(`round ${round + 1} ${reader.padEnd(16)} ${whole(sample.rows)} rows, ${whole(sample.rowsPerSec)} rows/s, ${fixed(sample.cpuUsPerRow, 2)} µs CPU/row, RSS ${fixed(sample.rssAtStartMb, 0)} MB at start, peak ${fixed(sample.peakRssMb, 0)} MB`);
    }
  }
  const readers: ReaderResult[] = READERS.map((reader) => {
    const all = samples.get(reader)!;
    return {
      reader,
      rows: all[0].rows,
      rowsPerSec: median(all.map((s) => s.rowsPerSec)),
      cpuUsPerRow: median(all.map((s) => s.cpuUsPerRow)),
      rssAtStartMb: median(all.map((s) => s.rssAtStartMb)),
      peakRssMb: Math.max(...all.map((s) => s.peakRssMb)),
    };
  });
  const demo: DemoLoadResult[] = [];
  // The demo creates its users table on its first start; fill it once it exists.
  const first = await startDemo(target);
  await first.stop();
  await seed(
    target,
    'TRUNCATE users',
    `INSERT INTO users (email, name, status) SELECT 'user' || g || '@example.com', 'User ' || g, 'active' FROM generate_series(1, ${options.demoUsers}) g`,
    'VACUUM ANALYZE users',
  );
  demo.push(await demoLoad(target, `GET /users?limit=${PAGE_LIMIT} (every page)`, pageThrough));
  demo.push(await demoLoad(target, 'GET /users/export (NDJSON)', exportAll));
  for (const d of demo) {
    report.line(`${d.workload}: ${whole(d.requests)} requests, ${whole(d.rowsRead)} rows in ${fixed(d.seconds, 1)} s; demo RSS ${fixed(d.rssAtReadyMb, 0)} MB ready, peak ${fixed(d.peakRssMb, 0)} MB`);
  }
  report.line(`(stream batch size ${BATCH_SIZE}; buffered fetch with maxRows: Infinity)`);
  report.line();
  return { streamRows: options.streamRows, demoUsers: options.demoUsers, readers, demo };
}
