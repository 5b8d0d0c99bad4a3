import type { INestApplicationContext } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import pg from 'pg';
import postgres from 'postgres';
import { DataSource } from 'typeorm';
import { DatabaseService, SecureDatabaseModule, sql } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { type BenchTarget, INSERT_EVENT_SQL, SELECT_USER_SQL } from './bench-database.js';

export type ContenderKey = 'service' | 'service-pipelined' | 'service-settings' | 'service-observed' | 'service-pipelined-observed' | 'pg' | 'typeorm' | 'postgres.js' | 'pg-pipeline';

/** One way of talking to the bench database, with the same pool size and verify-full TLS as the others. */
export interface Contender {
  key: ContenderKey;
  /** What it is, for the report. */
  description: string;
  /** Reads one bench_users row by primary key and returns it. */
  selectUser?(id: number): Promise<{ id: number }>;
  /** BEGIN; INSERT one bench_events row; COMMIT. */
  insertEvent?(userId: number, payload: string): Promise<void>;
  close(): Promise<void>;
}

// Longer than any pause between one contender's measurements: connections must not be closed as idle
// while the other contenders run, or the next measurement would pay for reconnecting.
const IDLE_TIMEOUT_MS = 600_000;
// The module's 5 s acquire timeout (pg and TypeORM wait forever by default) would turn one stall of a
// shared machine into an aborted run; a benchmark has no caller to answer in time.
const ACQUIRE_TIMEOUT_MS = 60_000;

const ignore = () => undefined;

export interface ServiceContender extends Contender {
  app: INestApplicationContext;
  service: DatabaseService;
  db: DatabasePool;
}

/**
 * Everything observability/ offers switched on, as a production app would: an onQuery hook (counting),
 * the slow-query log (a threshold no PK select reaches) and metrics into a real SDK MeterProvider whose
 * reader exports every 10 s to memory.
 */
function observedOptions(): { options: object; close(): Promise<void> } {
  const reader = new PeriodicExportingMetricReader({ exporter: new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE), exportIntervalMillis: 10_000 });
  const meterProvider = new MeterProvider({ readers: [reader] });
  let events = 0;
  return { options: { onQuery: () => void events++, slowQueryMs: 1000, meterProvider }, close: () => meterProvider.shutdown() };
}

/** DatabaseService built by the real module (NestFactory + SecureDatabaseModule.forRoot), as an application gets it. */
/** `pipelining` true: the documented fastest configuration; false: the module's defaults (reads pipelined), as a user who sets nothing gets them. */
export async function serviceContender(target: BenchTarget, poolMax: number, pipelining = false, observed = false): Promise<ServiceContender> {
  const observing = observed ? observedOptions() : undefined;
  const app = await NestFactory.createApplicationContext(
    {
      imports: [
        SecureDatabaseModule.forRoot({
          url: target.url,
          sslRootCert: target.caPem,
          poolMax,
          poolIdleTimeoutMs: IDLE_TIMEOUT_MS,
          acquireTimeoutMs: ACQUIRE_TIMEOUT_MS,
          appEnv: 'production',
          ...(pipelining ? { pipelining } : {}),
          ...observing?.options,
        }),
      ],
    },
    { logger: ['error'] },
  );
  const service = app.get(DatabaseService);
  return {
    key: `service${pipelining ? '-pipelined' : ''}${observed ? '-observed' : ''}` as ContenderKey,
    description: `DatabaseService (SecureDatabaseModule.forRoot, poolMax ${poolMax}${pipelining ? ', pipelining: true' : ', default options'}${observed ? ', onQuery + slowQueryMs + an SDK MeterProvider' : ''}): fetchrow(sql\`…\`) and transaction(tx => tx.execute(sql\`…\`))`,
    app,
    service,
    db: app.get<DatabasePool>(getDatabasePoolToken()),
    selectUser: (id) => service.fetchrow<{ id: number }>(sql`SELECT id, name, email FROM bench_users WHERE id = ${id}`),
    insertEvent: async (userId, payload) => {
      await service.transaction((tx) => tx.execute(sql`INSERT INTO bench_events (user_id, payload) VALUES (${userId}, ${payload})`));
    },
    close: async () => {
      await app.close();
      await observing?.close();
    },
  };
}

/** node-postgres as a careful user writes it: pg.Pool, verify-full against the same CA, no wrapper. */
export function rawPgContender(target: BenchTarget, poolMax: number): Contender & { pool: pg.Pool } {
  const pool = new pg.Pool({ ...target.rawPg, max: poolMax, idleTimeoutMillis: IDLE_TIMEOUT_MS });
  pool.on('error', ignore); // an idle connection killed by a restart must not crash the bench
  return {
    key: 'pg',
    description: `pg.Pool (max ${poolMax}, ssl { ca, rejectUnauthorized }): pool.query and BEGIN/INSERT/COMMIT on pool.connect()`,
    pool,
    selectUser: async (id) => (await pool.query<{ id: number }>(SELECT_USER_SQL, [id])).rows[0],
    insertEvent: async (userId, payload) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query(INSERT_EVENT_SQL, [userId, payload]);
        await client.query('COMMIT');
        client.release();
      } catch (error) {
        await client.query('ROLLBACK').catch(ignore);
        client.release(true);
        throw error;
      }
    },
    close: () => pool.end(),
  };
}

/** TypeORM through @nestjs/typeorm, raw SQL through its DataSource (no entities: the cost of the layer, not of an ORM mapping). */
export async function typeormContender(target: BenchTarget, poolMax: number): Promise<Contender> {
  const app = await NestFactory.createApplicationContext(
    {
      imports: [
        TypeOrmModule.forRoot({
          type: 'postgres',
          host: target.host,
          port: target.port,
          database: target.database,
          username: target.user,
          password: target.password,
          ssl: { ca: target.caPem },
          extra: { max: poolMax, idleTimeoutMillis: IDLE_TIMEOUT_MS },
          synchronize: false,
          retryAttempts: 0,
        }),
      ],
    },
    { logger: ['error'] },
  );
  const dataSource = app.get(DataSource);
  return {
    key: 'typeorm',
    description: `TypeORM ${dataSource.driver.options.type} via TypeOrmModule.forRoot (extra.max ${poolMax}, ssl { ca }): dataSource.query and dataSource.transaction(m => m.query)`,
    selectUser: async (id) => ((await dataSource.query(SELECT_USER_SQL, [id])) as Array<{ id: number }>)[0],
    insertEvent: async (userId, payload) => {
      await dataSource.transaction((manager) => manager.query(INSERT_EVENT_SQL, [userId, payload]));
    },
    close: () => app.close(),
  };
}

/** postgres.js with its defaults (named prepared statements on), same pool size and CA. */
export function postgresJsContender(target: BenchTarget, poolMax: number): Contender {
  const client = postgres({
    host: target.host,
    port: target.port,
    database: target.database,
    username: target.user,
    password: target.password,
    ssl: { ca: target.caPem },
    max: poolMax,
    idle_timeout: 0,
    onnotice: ignore,
  });
  return {
    key: 'postgres.js',
    description: `postgres.js (max ${poolMax}, ssl { ca }, defaults: prepared statements): sql\`…\``,
    selectUser: async (id) => (await client<Array<{ id: number }>>`SELECT id, name, email FROM bench_users WHERE id = ${id}`)[0],
    close: () => client.end({ timeout: 5 }),
  };
}

/**
 * pg 8.23 pipeline mode: `pipeline: true` on the Client lets queries be written before the previous
 * answer arrives. pg.Pool checks a client out exclusively, so pipelining only helps when callers share
 * clients: poolMax pipelined clients, each query on the one with the fewest queries in flight (the
 * first on a tie, so a lone caller keeps one warm backend, as pg-pool's LIFO idle list does).
 */
export async function pgPipelineContender(target: BenchTarget, poolMax: number): Promise<Contender> {
  const clients = Array.from({ length: poolMax }, () => new pg.Client({ ...target.rawPg, pipeline: true }));
  for (const client of clients) client.on('error', ignore);
  await Promise.all(clients.map((c) => c.connect()));
  const inFlight = clients.map(() => 0);
  const leastBusy = () => {
    let best = 0;
    for (let i = 1; i < inFlight.length; i++) if (inFlight[i] < inFlight[best]) best = i;
    return best;
  };
  return {
    key: 'pg-pipeline',
    description: `${poolMax} pg.Client { pipeline: true } shared by all callers, each query on the least busy one`,
    selectUser: async (id) => {
      const i = leastBusy();
      inFlight[i]++;
      try {
        return (await clients[i].query<{ id: number }>(SELECT_USER_SQL, [id])).rows[0];
      } finally {
        inFlight[i]--;
      }
    },
    close: async () => {
      await Promise.all(clients.map((c) => c.end()));
    },
  };
}
