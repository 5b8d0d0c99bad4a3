import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { type LocalPostgres, type LocalPostgresCluster, startLocalPostgres } from '../../src/local-postgres/index.js';

export const USER_ROWS = 10_000;
export const SELECT_USER_SQL = 'SELECT id, name, email FROM bench_users WHERE id = $1';
export const INSERT_EVENT_SQL = 'INSERT INTO bench_events (user_id, payload) VALUES ($1, $2)';

/** Where every contender connects: the same server, role, CA and verify-full TLS. */
export interface BenchTarget {
  cluster: LocalPostgresCluster;
  caPem: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  /** SecureDatabaseModule's DATABASE_URL (sslmode defaults to verify-full). */
  url: string;
  /** node-postgres settings a careful user writes by hand: verify-full against the same CA. */
  rawPg: pg.PoolConfig;
  serverVersion: string;
  /** TLS version and cipher the server reports for a bench connection. */
  tls: string;
}

export interface BenchDatabase {
  local: LocalPostgres;
  target: BenchTarget;
  stop(): Promise<void>;
}

/** A private TLS cluster of its own (never a shared one: the recovery scenario restarts it) with the bench tables. */
export async function startBenchDatabase(): Promise<BenchDatabase> {
  const local = await startLocalPostgres([{ name: 'bench', tls: ['localhost', '127.0.0.1'] }]);
  try {
    const cluster = local.clusters.bench;
    const caPem = await readFile(local.ca.certPath, 'utf8');
    const f = cluster.facts;
    const rawPg: pg.PoolConfig = {
      host: f.host,
      port: f.port,
      database: f.database,
      user: f.user,
      password: f.password,
      ssl: { ca: caPem, rejectUnauthorized: true },
    };
    const { serverVersion, tls } = await createTables(rawPg);
    const target: BenchTarget = { cluster, caPem, host: f.host, port: f.port, database: f.database, user: f.user, password: f.password, url: cluster.url(), rawPg, serverVersion, tls };
    return { local, target, stop: () => local.stop() };
  } catch (error) {
    await local.stop();
    throw error;
  }
}

async function createTables(config: pg.ClientConfig): Promise<{ serverVersion: string; tls: string }> {
  const client = new pg.Client(config);
  await client.connect();
  try {
    await client.query(`
      CREATE TABLE bench_users (id int PRIMARY KEY, name text NOT NULL, email text NOT NULL);
      INSERT INTO bench_users SELECT g, 'user ' || g, 'user' || g || '@example.com' FROM generate_series(1, ${USER_ROWS}) g;
      CREATE TABLE bench_events (id bigserial PRIMARY KEY, user_id int NOT NULL, payload text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
    `);
    await client.query('VACUUM ANALYZE bench_users'); // index-only visibility and fresh statistics before the first plan
    const { rows } = await client.query<{ server_version: string; tls: string }>(
      "SELECT current_setting('server_version') AS server_version, s.version || ' ' || s.cipher AS tls FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()",
    );
    return { serverVersion: rows[0].server_version, tls: rows[0].tls };
  } finally {
    await client.end();
  }
}

/** The user id operation `i` reads: spread over the table, the same sequence for every contender. */
export function userIdFor(i: number): number {
  return ((i * 7919) % USER_ROWS) + 1;
}
