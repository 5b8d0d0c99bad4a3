import { type DynamicModule, Module } from '@nestjs/common';
import type { SecureDatabaseModuleAsyncOptions, SecureDatabaseModuleOptions } from './interfaces/secure-database-options.interface.js';
import { SecureDatabaseCoreModule } from './secure-database-core.module.js';

/**
 * Import once in the root module. The connection is global: inject DatabaseService anywhere.
 *
 *   SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())
 */
@Module({})
export class SecureDatabaseModule {
  static forRoot(options: SecureDatabaseModuleOptions): DynamicModule {
    return { module: SecureDatabaseModule, imports: [SecureDatabaseCoreModule.forRoot(options)] };
  }

  static forRootAsync(options: SecureDatabaseModuleAsyncOptions): DynamicModule {
    return { module: SecureDatabaseModule, imports: [SecureDatabaseCoreModule.forRootAsync(options)] };
  }
}
