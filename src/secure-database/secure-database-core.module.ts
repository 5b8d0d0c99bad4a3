import {
  type DynamicModule,
  Global,
  Inject,
  Module,
  type OnApplicationShutdown,
  type OnModuleDestroy,
  type OnModuleInit,
  type Provider,
} from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type {
  SecureDatabaseModuleAsyncOptions,
  SecureDatabaseModuleOptions,
  SecureDatabaseOptionsFactory,
} from './interfaces/secure-database-options.interface.js';
import type { DatabasePool } from './pool/database-pool.js';
import { DEFAULT_CONNECTION_NAME, SECURE_DATABASE_CONNECTION_NAME } from './secure-database.constants.js';
import { logStartupFailure } from './errors/startup-failure-hint.js';
import { runMigrations } from './migrate/run-migrations.js';
import { establishStartupConnection } from './pool/startup-connection.js';
import { createConnectionProviders, databaseLogger } from './secure-database.providers.js';
import { getDatabasePoolToken, getDatabaseServiceToken, getPoolToken, getSecureDatabaseOptionsToken } from './secure-database.utils.js';
import type { DatabaseService } from './service/database.service.js';
import { registerTransactionalService, unregisterTransactionalService } from './service/transactional.js';

@Global()
@Module({})
/**
 * One per connection name. Lifecycle, in Nest's order:
 * - onModuleInit opens the first connection and runs the TLS assertion (with startup retries). The
 *   module is global, so Nest runs this before any other module's onModuleInit, and startup fails
 *   before `listen` when the database is wrong. Then @Transactional() methods can find the service.
 * - onModuleDestroy begins shutdown: readiness reports `shutting down` and the one shutdown budget
 *   starts; requests still in flight keep their database.
 * - onApplicationShutdown, which Nest calls after it has closed the HTTP server, drains the pool
 *   within what is left of that budget.
 */
export class SecureDatabaseCoreModule implements OnModuleInit, OnModuleDestroy, OnApplicationShutdown {
  constructor(
    @Inject(SECURE_DATABASE_CONNECTION_NAME) private readonly name: string,
    private readonly moduleRef: ModuleRef,
  ) {}

  static forRoot(options: SecureDatabaseModuleOptions = {}): DynamicModule {
    return SecureDatabaseCoreModule.build(options.name, [{ provide: getSecureDatabaseOptionsToken(options.name), useValue: options }]);
  }

  static forRootAsync(options: SecureDatabaseModuleAsyncOptions): DynamicModule {
    return SecureDatabaseCoreModule.build(options.name, SecureDatabaseCoreModule.createAsyncOptionsProviders(options), options.imports);
  }

  private static build(name: string | undefined, optionProviders: Provider[], imports: DynamicModule['imports'] = []): DynamicModule {
    const connectionProviders = createConnectionProviders(name);
    return {
      module: SecureDatabaseCoreModule,
      imports,
      providers: [{ provide: SECURE_DATABASE_CONNECTION_NAME, useValue: name ?? DEFAULT_CONNECTION_NAME }, ...optionProviders, ...connectionProviders],
      exports: [getPoolToken(name), getDatabaseServiceToken(name), getDatabasePoolToken(name)],
    };
  }

  private static createAsyncOptionsProviders(options: SecureDatabaseModuleAsyncOptions): Provider[] {
    const token = getSecureDatabaseOptionsToken(options.name);
    if (options.useFactory) {
      return [{ provide: token, useFactory: options.useFactory, inject: options.inject ?? [] }];
    }
    const factoryClass = options.useClass ?? options.useExisting;
    if (!factoryClass) throw new Error('SecureDatabaseModule.forRootAsync needs useFactory, useClass or useExisting');
    return [
      ...(options.useClass ? [{ provide: options.useClass, useClass: options.useClass }] : []),
      {
        provide: token,
        useFactory: (factory: SecureDatabaseOptionsFactory) => factory.createSecureDatabaseOptions(),
        inject: [factoryClass],
      },
    ];
  }

  async onModuleInit(): Promise<void> {
    const db = this.databasePool();
    const logger = databaseLogger(db.config.name);
    try {
      await establishStartupConnection(db, logger);
    } catch (error) {
      await db.close();
      logStartupFailure(logger, error);
      throw error;
    }
    if (db.config.migrations.run) await this.migrate(db, logger);
    registerTransactionalService(this.name, this.databaseService(), db);
  }

  /** migrationsRun: the pending migrations, through a pool of their own for the owner role; a failure fails startup. */
  private async migrate(db: DatabasePool, logger: ReturnType<typeof databaseLogger>): Promise<void> {
    const options = this.moduleRef.get<SecureDatabaseModuleOptions>(getSecureDatabaseOptionsToken(this.name));
    try {
      const { applied } = await runMigrations({ dir: db.config.migrations.dir, database: { ...options, migrationsRun: false }, log: (line) => logger.log(`Migrations: ${line}`) });
      logger.log(`Migrations: ${applied.length ? `applied ${applied.join(', ')}` : 'none pending'}`);
    } catch (error) {
      await db.close();
      // The migration error names the file and the SQLSTATE, never the SQL.
      logger.error(`Database startup failed [migrations]: ${error instanceof Error ? error.message : String(error)}`);
      throw error;
    }
  }

  onModuleDestroy(): void {
    this.databasePool().beginShutdown();
  }

  async onApplicationShutdown(): Promise<void> {
    try {
      await this.databasePool().close();
    } finally {
      unregisterTransactionalService(this.name, this.databaseService());
    }
  }

  private databaseService(): DatabaseService {
    return this.moduleRef.get<DatabaseService>(getDatabaseServiceToken(this.name));
  }

  private databasePool(): DatabasePool {
    return this.moduleRef.get<DatabasePool>(getDatabasePoolToken(this.name));
  }
}
