import { Test, type TestingModule } from '@nestjs/testing';
import { DatabaseService, SecureDatabaseModule, type SecureDatabaseModuleOptions } from '../../src/index.js';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { type Harness, harness, scratchDatabase } from '../support/harness.js';

export interface ServiceFixture {
  h: Harness;
  /** The scratch database's cluster handle (its url() and withSuperuser() point at the scratch database). */
  cluster: LocalPostgresCluster;
  moduleRef: TestingModule;
  db: DatabaseService;
  databasePool: DatabasePool;
  close(): Promise<void>;
}

/** The module over a private scratch database on the TLS cluster, in production mode. */
export async function startService(options: Partial<SecureDatabaseModuleOptions> = {}): Promise<ServiceFixture> {
  const h = harness();
  const scratch = await scratchDatabase(h.tls);
  const moduleRef = await Test.createTestingModule({
    imports: [SecureDatabaseModule.forRoot({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', ...options })],
  }).compile();
  await moduleRef.init();
  return {
    h,
    cluster: scratch.cluster,
    moduleRef,
    db: moduleRef.get(DatabaseService),
    databasePool: moduleRef.get<DatabasePool>(getDatabasePoolToken()),
    close: async () => {
      await moduleRef.close();
      await scratch.drop();
    },
  };
}

/** Connections checked out of the pool right now. */
export function checkedOut(db: DatabaseService): number {
  return db.pool.totalCount - db.pool.idleCount;
}

/** Waits until the server no longer lists backend `pid`. */
export async function waitForBackendExit(cluster: LocalPostgresCluster, pid: number): Promise<void> {
  await cluster.withSuperuser(async (admin) => {
    for (let i = 0; i < 200; i++) {
      const { rowCount } = await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid]);
      if (rowCount === 0) return;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    throw new Error(`backend ${pid} did not exit`);
  });
}

/** A promise with its resolve function, for making concurrent transactions meet. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(value: T): void } {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/**
 * Waits (at most 2 s, on the pool's own counters) until nothing is checked out or in flight. A read that
 * joined a shared connection (reads are pipelined by default) hands back the connection it had asked
 * the pool for only when that arrives, just after the read itself resolved.
 */
export async function poolSettled(db: DatabaseService): Promise<void> {
  for (let i = 0; i < 400 && (checkedOut(db) > 0 || db.stats().inFlight > 0); i++) await new Promise((resolve) => setTimeout(resolve, 5));
}
