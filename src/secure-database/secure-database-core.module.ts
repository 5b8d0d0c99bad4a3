import { type DynamicModule, Global, Inject, Module, type OnApplicationShutdown, type Provider } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import type {
  SecureDatabaseModuleAsyncOptions,
  SecureDatabaseModuleOptions,
  SecureDatabaseOptionsFactory,
} from './interfaces/secure-database-options.interface.js';
import type { DatabasePool } from './pool/database-pool.js';
import { DEFAULT_CONNECTION_NAME, SECURE_DATABASE_CONNECTION_NAME } from './secure-database.constants.js';
import { createConnectionProviders } from './secure-database.providers.js';
import { getDatabasePoolToken, getDatabaseServiceToken, getPoolToken, getSecureDatabaseOptionsToken } from './secure-database.utils.js';

@Global()
@Module({})
export class SecureDatabaseCoreModule implements OnApplicationShutdown {
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

  /**
   * Drains after Nest has closed the HTTP server (dispose runs before onApplicationShutdown), so
   * requests already in flight still have their database when they finish.
   */
  async onApplicationShutdown(): Promise<void> {
    await this.moduleRef.get<DatabasePool>(getDatabasePoolToken(this.name)).close();
  }
}
