// Child process of the copy scenario: writes COPY_ROWS generated rows into bench_copy one way and
// prints one JSON line with the rows, the time and the process's RSS at start and peak. Fresh per
// writer, so each peak is its own.
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import postgres from 'postgres';
import { DatabaseService, SecureDatabaseModule } from '../../src/index.js';
import { encodeRow } from '../../src/secure-database/copy/copy-text-format.js';
import type { BenchTarget } from './bench-database.js';

export const WRITERS = ['service-copyFrom', 'service-insert-batches', 'service-insert-unnest', 'postgres.js-copy'] as const;
export type Writer = (typeof WRITERS)[number];
/** Rows per multi-row INSERT (4 parameters each: 4,000 of the protocol's 65,535). */
export const INSERT_BATCH = 1_000;
/** Rows per INSERT … SELECT unnest($1…) (4 array parameters). */
export const UNNEST_BATCH = 10_000;
export const COLUMNS = ['id', 'label', 'note', 'at'] as const;

type WriterTarget = Pick<BenchTarget, 'url' | 'caPem' | 'host' | 'port' | 'database' | 'user' | 'password'>;

const mb = (bytes: number) => bytes / 1024 / 1024;
const EPOCH = Date.UTC(2026, 0, 1);

/** Row i: an int, text that needs escaping in COPY (tab, newline, backslash, quote, non-ASCII), a NULL every 5th row, a timestamp. */
export function row(i: number): [number, string, string | null, Date] {
  return [i, `label ${i}\t"quoted" \\ é\n`, i % 5 === 0 ? null : `note ${i % 1000}`, new Date(EPOCH + i * 1000)];
}

function* rows(count: number): Generator<[number, string, string | null, Date]> {
  for (let i = 1; i <= count; i++) yield row(i);
}

async function write(writer: Writer, count: number, target: WriterTarget, onStarted: () => void): Promise<number> {
  if (writer === 'postgres.js-copy') {
    const sql = postgres({ host: target.host, port: target.port, database: target.database, username: target.user, password: target.password, ssl: { ca: target.caPem }, max: 1, onnotice: () => undefined });
    onStarted();
    try {
      // postgres.js takes the COPY data as it is: the same text-format encoder as copyFrom writes it, in chunks of the same size.
      const stream = await sql`COPY bench_copy (id, label, note, at) FROM STDIN`.writable();
      let chunk = '';
      for (const values of rows(count)) {
        chunk += encodeRow(values);
        if (chunk.length >= 64 * 1024) {
          if (!stream.write(chunk)) await new Promise((resolve) => stream.once('drain', resolve));
          chunk = '';
        }
      }
      await new Promise<void>((resolve, reject) => {
        stream.once('error', reject);
        stream.end(chunk, () => resolve());
      });
      return count;
    } finally {
      await sql.end({ timeout: 5 });
    }
  }
  const app = await NestFactory.createApplicationContext(
    { imports: [SecureDatabaseModule.forRoot({ url: target.url, sslRootCert: target.caPem, appEnv: 'production', statementTimeoutMs: 600_000, poolMax: 2 })] },
    { logger: ['error'] },
  );
  const db = app.get(DatabaseService);
  onStarted();
  try {
    if (writer === 'service-copyFrom') return await db.copyFrom('bench_copy', COLUMNS, rows(count));
    let written = 0;
    const batch: unknown[][] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      if (writer === 'service-insert-batches') {
        const placeholders = batch.map((_r, i) => `($${i * 4 + 1}, $${i * 4 + 2}, $${i * 4 + 3}, $${i * 4 + 4})`).join(', ');
        written += await db.execute(`INSERT INTO bench_copy (id, label, note, at) VALUES ${placeholders}`, batch.flat());
      } else {
        const columns = COLUMNS.map((_c, j) => batch.map((r) => r[j]));
        written += await db.execute('INSERT INTO bench_copy (id, label, note, at) SELECT * FROM unnest($1::int[], $2::text[], $3::text[], $4::timestamptz[])', columns);
      }
      batch.length = 0;
    };
    const size = writer === 'service-insert-batches' ? INSERT_BATCH : UNNEST_BATCH;
    for (const values of rows(count)) {
      batch.push(values);
      if (batch.length === size) await flush();
    }
    await flush();
    return written;
  } finally {
    await app.close();
  }
}

async function main(): Promise<void> {
  const writer = process.argv[2] as Writer;
  const count = Number(process.argv[3]);
  if (!WRITERS.includes(writer)) throw new Error(`writer must be one of ${WRITERS.join(', ')}`);
  const target = JSON.parse(process.env.BENCH_WRITER_TARGET ?? '{}') as WriterTarget;
  let started = 0;
  let rssAtStart = 0;
  let cpuAtStart = process.cpuUsage();
  const written = await write(writer, count, target, () => {
    rssAtStart = process.memoryUsage().rss;
    cpuAtStart = process.cpuUsage();
    started = performance.now();
  });
  const seconds = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const result = { writer, rows: written, seconds, rowsPerSec: written / seconds, cpuUsPerRow: (cpu.user + cpu.system) / written, rssAtStartMb: mb(rssAtStart), peakRssMb: mb(peakRss) };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
