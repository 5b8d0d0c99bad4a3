import { dirname, join } from 'node:path';
import type { Provider } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { DatabaseService, SecureDatabaseModule, type SecureDatabaseModuleOptions } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import type { ServiceFixture } from './service-fixture.js';

/** Where the transaction specs run: each shared-connection feature is tested directly and behind a transaction pooler. */
export interface TransactionTarget {
  name: string;
  /** Starts the target's server side (once per spec file section). */
  setUp(): Promise<void>;
  /**
   * A Nest testing module with SecureDatabaseModule.forRoot (pipelining on, statement cache at its
   * default) and `providers`; with `secondConnection`, a second forRoot of that name to the same database.
   */
  start(options?: Partial<SecureDatabaseModuleOptions>, providers?: Provider[], secondConnection?: string): Promise<ServiceFixture>;
  tearDown(): Promise<void>;
}

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };

async function startModule(
  url: string,
  cluster: ServiceFixture['cluster'],
  options: Partial<SecureDatabaseModuleOptions>,
  providers: Provider[],
  secondConnection: string | undefined,
  close: () => Promise<void>,
): Promise<ServiceFixture> {
  const connection = { url, sslRootCert: h.caPem, appEnv: 'production' as const, pipelining: true, ...options };
  const moduleRef = await Test.createTestingModule({
    imports: [SecureDatabaseModule.forRoot(connection), ...(secondConnection ? [SecureDatabaseModule.forRoot({ ...connection, name: secondConnection })] : [])],
    providers,
  }).compile();
  await moduleRef.init();
  return {
    h,
    cluster,
    moduleRef,
    db: moduleRef.get(DatabaseService),
    databasePool: moduleRef.get<DatabasePool>(getDatabasePoolToken()),
    close: async () => {
      await moduleRef.close();
      await close();
    },
  };
}

/** Straight to the TLS cluster: pipelining on, statement cache on (default). A scratch database per start. */
export function directTarget(): TransactionTarget {
  return {
    name: 'direct (pipelining on, statement cache on)',
    setUp: async () => undefined,
    async start(options = {}, providers = [], secondConnection) {
      const scratch = await scratchDatabase(h.tls);
      return startModule(scratch.cluster.url(), scratch.cluster, options, providers, secondConnection, () => scratch.drop());
    },
    tearDown: async () => undefined,
  };
}

/** Through PgBouncer in transaction mode (pooler: 'transaction'), one PgBouncer and scratch database per section. */
export function transactionPoolerTarget(): TransactionTarget {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>> | undefined;
  let bouncer: Pgbouncer | undefined;
  return {
    name: 'behind PgBouncer in transaction mode (pipelining asked for)',
    async setUp() {
      scratch = await scratchDatabase(h.tls);
      bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 5 });
    },
    async start(options = {}, providers = [], secondConnection) {
      // Every start shares the section's database: specs create their tables IF NOT EXISTS and truncate.
      return startModule(bouncer!.url(), scratch!.cluster, { pooler: 'transaction', ...options }, providers, secondConnection, async () => undefined);
    },
    async tearDown() {
      await bouncer?.stop();
      await scratch?.drop();
    },
  };
}
