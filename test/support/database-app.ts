import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { SecureDatabaseModule, getPoolToken, type SecureDatabaseModuleOptions } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';

export interface DatabaseApp {
  app: INestApplication;
  db: DatabasePool;
  pool: pg.Pool;
  close(): Promise<void>;
}

/** A Nest app with only SecureDatabaseModule.forRoot(options), initialised (startup connection done). */
export async function startDatabaseApp(options: SecureDatabaseModuleOptions): Promise<DatabaseApp> {
  const moduleRef = await Test.createTestingModule({ imports: [SecureDatabaseModule.forRoot(options)] }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  await app.init();
  return {
    app,
    db: app.get(getDatabasePoolToken()),
    pool: app.get(getPoolToken()),
    close: () => app.close(),
  };
}

/** The error startup fails with (compile() runs the pool factory), or a failure if it starts. */
export async function startupError(options: SecureDatabaseModuleOptions): Promise<Error> {
  try {
    const started = await startDatabaseApp(options);
    await started.close();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected startup to fail');
}
