import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { BenchTarget } from '../support/bench-database.js';
import { seed as sql } from './bounded-results.scenario.js';
import type { BenchOptions } from '../support/bench-options.js';
import { INSERT_BATCH, UNNEST_BATCH, WRITERS, type Writer } from '../support/copy-writer.js';
import { type Report, fixed, whole } from '../support/report.js';

const run = promisify(execFile);
const SUPPORT = join(import.meta.dirname, '..', 'support');

export interface WriterResult {
  writer: Writer;
  rows: number;
  /** Median over the rounds. */
  rowsPerSec: number;
  cpuUsPerRow: number;
  rssAtStartMb: number;
  /** Highest over the rounds. */
  peakRssMb: number;
  /** Peak RSS minus RSS at start, highest over the rounds. */
  rssGrowthMb: number;
}

export interface CopyResults {
  rows: number;
  rounds: number;
  writers: WriterResult[];
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

/**
 * Issue 28's figures: COPY_ROWS rows (int, text needing escapes, NULLs, timestamptz) written four
 * ways, each in a fresh process (rows/s, client CPU, peak RSS): copyFrom, multi-row INSERT batches and
 * INSERT … SELECT unnest($1…) through the service, and postgres.js's COPY fed the same text. The table
 * is truncated before each write; rounds interleaved with the order rotated, medians reported.
 */
export async function runCopy(target: BenchTarget, options: BenchOptions, report: Report): Promise<CopyResults> {
  const rows = options.copyRows;
  const rounds = Math.min(options.rounds, 3);
  report.line(`## COPY: ${whole(rows)} rows written four ways (own process each), ${rounds} round(s)`);
  await sql(target, 'DROP TABLE IF EXISTS bench_copy', 'CREATE UNLOGGED TABLE bench_copy (id int NOT NULL, label text NOT NULL, note text, at timestamptz NOT NULL)');
  const samples = new Map<Writer, Array<{ rows: number; rowsPerSec: number; cpuUsPerRow: number; rssAtStartMb: number; peakRssMb: number }>>(WRITERS.map((w) => [w, []]));
  try {
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < WRITERS.length; i++) {
        const writer = WRITERS[(i + round) % WRITERS.length];
        await sql(target, 'TRUNCATE bench_copy');
        const { stdout } = await run(process.execPath, [join(SUPPORT, 'copy-writer.js'), writer, String(rows)], {
          env: { ...process.env, BENCH_WRITER_TARGET: JSON.stringify({ url: target.url, caPem: target.caPem, host: target.host, port: target.port, database: target.database, user: target.user, password: target.password }) },
          maxBuffer: 1024 * 1024,
        });
        const sample = JSON.parse(stdout.trim().split('\n').pop()!);
        if (sample.rows !== rows) throw new Error(`${writer} wrote ${sample.rows} rows, not ${rows}`);
        samples.get(writer)!.push(sample);
        report.line(`  round ${round + 1} ${writer.padEnd(24)} ${whole(sample.rowsPerSec)} rows/s, peak RSS ${fixed(sample.peakRssMb, 0)} MB`);
      }
    }
  } finally {
    await sql(target, 'DROP TABLE IF EXISTS bench_copy');
  }
  const writers = WRITERS.map((writer) => {
    const s = samples.get(writer)!;
    return {
      writer,
      rows,
      rowsPerSec: median(s.map((x) => x.rowsPerSec)),
      cpuUsPerRow: median(s.map((x) => x.cpuUsPerRow)),
      rssAtStartMb: median(s.map((x) => x.rssAtStartMb)),
      peakRssMb: Math.max(...s.map((x) => x.peakRssMb)),
      rssGrowthMb: Math.max(...s.map((x) => x.peakRssMb - x.rssAtStartMb)),
    };
  });
  report.line(`(multi-row INSERT: ${whole(INSERT_BATCH)} rows per statement; unnest: ${whole(UNNEST_BATCH)} rows per statement; postgres.js is fed the same text-format encoder copyFrom uses)`);
  report.line();
  return { rows, rounds, writers };
}
