import { Logger, type Provider } from '@nestjs/common';
import { resolveDatabaseConfig } from './config/resolve-database-config.js';
import { SecureDatabaseError } from './errors/secure-database.error.js';
import { startupFailureHint } from './errors/startup-failure-hint.js';
import type { SecureDatabaseModuleOptions } from './interfaces/secure-database-options.interface.js';
import { DatabasePool } from './pool/database-pool.js';
import { establishStartupConnection } from './pool/startup-connection.js';
import { getDatabasePoolToken, getDatabaseServiceToken, getPoolToken, getSecureDatabaseOptionsToken } from './secure-database.utils.js';
import { DatabaseService } from './service/database.service.js';

/**
 * Validates the options, builds the pool and opens the first (TLS-asserted) connection before the
 * application starts: a bad config, unreachable server or failed assertion stops startup here.
 */
export async function createDatabasePool(options: SecureDatabaseModuleOptions, name?: string): Promise<DatabasePool> {
  const logger = new Logger(name ? `SecureDatabase:${name}` : 'SecureDatabase');
  let db: DatabasePool | undefined;
  try {
    const config = resolveDatabaseConfig({ ...options, name: options?.name ?? name });
    for (const warning of config.warnings) logger.warn(warning);
    db = new DatabasePool(config);
    await establishStartupConnection(db, logger);
    return db;
  } catch (error) {
    await db?.close();
    if (error instanceof SecureDatabaseError) logger.error(`Database startup failed [${error.code}]: ${error.message}. ${startupFailureHint(error.code)}`);
    throw error;
  }
}

export function createConnectionProviders(name?: string): Provider[] {
  return [
    {
      provide: getDatabasePoolToken(name),
      useFactory: (options: SecureDatabaseModuleOptions) => createDatabasePool(options, name),
      inject: [getSecureDatabaseOptionsToken(name)],
    },
    { provide: getPoolToken(name), useFactory: (db: DatabasePool) => db.pool, inject: [getDatabasePoolToken(name)] },
    {
      provide: getDatabaseServiceToken(name),
      useFactory: (db: DatabasePool) => new DatabaseService(db),
      inject: [getDatabasePoolToken(name)],
    },
  ];
}
