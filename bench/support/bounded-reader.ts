// Child process of the bounded-results scenario: reads the whole bench_wide table one way and prints
// one JSON line with the rows read, the time and the process's peak RSS. Fresh per contender, so each
// peak is its own.
import 'reflect-metadata';
import { fileURLToPath } from 'node:url';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import QueryStream from 'pg-query-stream';
import { DatabaseService, SecureDatabaseModule, sql } from '../../src/index.js';

export const READERS = ['service-stream', 'pg-query-stream', 'service-fetch'] as const;
export type Reader = (typeof READERS)[number];
export const BATCH_SIZE = 500;

interface ReaderTarget {
  url: string;
  caPem: string;
  rawPg: pg.PoolConfig;
}

const mb = (bytes: number) => bytes / 1024 / 1024;

async function read(reader: Reader, target: ReaderTarget, onStarted: () => void): Promise<number> {
  if (reader === 'pg-query-stream') {
    const client = new pg.Client(target.rawPg);
    await client.connect();
    onStarted();
    let rows = 0;
    try {
      for await (const _row of client.query(new QueryStream('SELECT id, label, created_at FROM bench_wide', [], { batchSize: BATCH_SIZE }))) rows++;
    } finally {
      await client.end();
    }
    return rows;
  }
  const app = await NestFactory.createApplicationContext(
    { imports: [SecureDatabaseModule.forRoot({ url: target.url, sslRootCert: target.caPem, appEnv: 'production', statementTimeoutMs: 600_000 })] },
    { logger: ['error'] },
  );
  const db = app.get(DatabaseService);
  onStarted();
  try {
    const query = sql`SELECT id, label, created_at FROM bench_wide`;
    if (reader === 'service-fetch') return (await db.fetch(query, { maxRows: Infinity })).length;
    let rows = 0;
    for await (const _row of db.stream(query, { batchSize: BATCH_SIZE })) rows++;
    return rows;
  } finally {
    await app.close();
  }
}

async function main(): Promise<void> {
  const reader = process.argv[2] as Reader;
  if (!READERS.includes(reader)) throw new Error(`reader must be one of ${READERS.join(', ')}`);
  const target = JSON.parse(process.env.BENCH_READER_TARGET ?? '{}') as ReaderTarget;
  let started = 0;
  let rssAtStart = 0;
  let cpuAtStart = process.cpuUsage();
  const rows = await read(reader, target, () => {
    rssAtStart = process.memoryUsage().rss;
    cpuAtStart = process.cpuUsage();
    started = performance.now();
  });
  const seconds = (performance.now() - started) / 1000;
  // CPU time is what this process spent, whatever else the shared machine was doing.
  const cpu = process.cpuUsage(cpuAtStart);
  const peakRss = process.resourceUsage().maxRSS * 1024;
  const result = { reader, rows, seconds, rowsPerSec: rows / seconds, cpuUsPerRow: (cpu.user + cpu.system) / rows, rssAtStartMb: mb(rssAtStart), peakRssMb: mb(peakRss) };
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

// Run as a script; imported by the scenario for its constants only.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((error: unknown) => {
    process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
    process.exitCode = 1;
  });
}
