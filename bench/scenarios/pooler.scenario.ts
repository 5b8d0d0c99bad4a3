import { NestFactory } from '@nestjs/core';
import { DatabaseService, SecureDatabaseModule, sql } from '../../src/index.js';
import { startPgbouncer } from '../../test/support/pgbouncer.js';
import type { BenchDatabase } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import { type Contender, rawPgContender } from '../support/contenders.js';
import type { Report } from '../support/report.js';
import { type ThroughputResult, runThroughput } from './throughput.scenario.js';

export interface PoolerResults {
  pgbouncer: string;
  throughput: ThroughputResult[];
}

// As in contenders.ts: no idle close between measurements, no acquire timeout on a busy machine.
const IDLE_TIMEOUT_MS = 600_000;
const ACQUIRE_TIMEOUT_MS = 60_000;

/**
 * The transaction-pooler path: DatabaseService with DATABASE_POOLER=transaction (each statement sent
 * after the SET LOCAL timeouts, in one round trip and one implicit transaction) against raw pg.Pool
 * through the same PgBouncer (transaction mode, TLS on both legs, server leg verify-full, as many
 * server connections as the pool size), which sends the statement alone and has no server timeouts.
 */
export async function runPooler(bench: BenchDatabase, options: BenchOptions, report: Report): Promise<PoolerResults> {
  const { target } = bench;
  const bouncer = await startPgbouncer({ upstream: target.cluster, ca: bench.local.ca, poolSize: options.poolMax });
  const app = await NestFactory.createApplicationContext(
    {
      imports: [
        SecureDatabaseModule.forRoot({
          url: bouncer.url(),
          sslRootCert: target.caPem,
          pooler: 'transaction',
          poolMax: options.poolMax,
          poolIdleTimeoutMs: IDLE_TIMEOUT_MS,
          acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
          appEnv: 'production',
        }),
      ],
    },
    { logger: ['error'] },
  );
  const db = app.get(DatabaseService);
  const service: Contender = {
    key: 'service',
    description: 'DatabaseService, DATABASE_POOLER=transaction, through PgBouncer',
    selectUser: (id) => db.fetchrow<{ id: number }>(sql`SELECT id, name, email FROM bench_users WHERE id = ${id}`),
    insertEvent: async (userId, payload) => {
      await db.transaction((tx) => tx.execute(sql`INSERT INTO bench_events (user_id, payload) VALUES (${userId}, ${payload})`));
    },
    close: () => app.close(),
  };
  const raw = rawPgContender({ ...target, rawPg: { ...target.rawPg, host: bouncer.host, port: bouncer.port } }, options.poolMax);
  try {
    report.line(`## Through PgBouncer (transaction mode, pool size ${options.poolMax}, client TLS, server TLS verify-full)`);
    const throughput: ThroughputResult[] = [];
    throughput.push(...(await runThroughput('select', [service, raw], options, report)));
    throughput.push(...(await runThroughput('insert', [service, raw], options, report)));
    return { pgbouncer: bouncer.version, throughput };
  } finally {
    await Promise.allSettled([service.close(), raw.close()]);
    await bouncer.stop();
  }
}
