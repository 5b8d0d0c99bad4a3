import { registerAs } from '@nestjs/config';
import type { SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { DATABASE_ENV_NAMES } from './secure-database-options.schema.js';

/** Reads the DATABASE_* variables (and APP_ENV) into module options; empty values count as unset. */
export function readDatabaseEnv(env: NodeJS.ProcessEnv = process.env): SecureDatabaseModuleOptions {
  const options: Record<string, string> = {};
  for (const [key, envName] of Object.entries(DATABASE_ENV_NAMES)) {
    const value = env[envName];
    if (value !== undefined && value.trim() !== '') options[key] = value;
  }
  return options as SecureDatabaseModuleOptions;
}

/**
 * The environment as a config namespace: `SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())`.
 * Validation happens in the module, so options from code and from the environment get the same checks.
 */
export const databaseConfig = registerAs('database', (): SecureDatabaseModuleOptions => readDatabaseEnv(process.env));
