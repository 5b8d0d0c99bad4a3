import { Logger, type Provider } from '@nestjs/common';
import { resolveDatabaseConfig } from './config/resolve-database-config.js';
import { logStartupFailure } from './errors/startup-failure-hint.js';
import type { SecureDatabaseModuleOptions } from './interfaces/secure-database-options.interface.js';
import { DatabasePool } from './pool/database-pool.js';
import { observeDatabase } from './observability/observe-database.js';
import { getDatabasePoolToken, getDatabaseServiceToken, getPoolToken, getSecureDatabaseOptionsToken } from './secure-database.utils.js';
import { DatabaseService } from './service/database.service.js';

export function databaseLogger(name?: string): Logger {
  return new Logger(name ? `SecureDatabase:${name}` : 'SecureDatabase');
}

/**
 * Validates the options and builds the pool; a bad configuration stops the app here, before any
 * connection. The first connection (and its TLS assertion) is opened by the core module's onModuleInit.
 */
export function createDatabasePool(options: SecureDatabaseModuleOptions, name?: string): DatabasePool {
  const logger = databaseLogger(name);
  try {
    const config = resolveDatabaseConfig({ ...options, name: options?.name ?? name });
    for (const warning of config.warnings) logger.warn(warning);
    return new DatabasePool(config);
  } catch (error) {
    logStartupFailure(logger, error);
    throw error;
  }
}

export function createConnectionProviders(name?: string): Provider[] {
  return [
    {
      provide: getDatabasePoolToken(name),
      useFactory: async (options: SecureDatabaseModuleOptions) => {
        const db = createDatabasePool(options, name);
        await observeDatabase(db, options ?? {}, databaseLogger(name));
        return db;
      },
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
