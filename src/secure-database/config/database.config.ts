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

/**
 * A read replica as a second connection: DATABASE_REPLICA_URL, readOnly, every other DATABASE_*
 * setting shared with the primary's (CA, timeouts, pool size …). The primary's pooler setting and
 * direct URL are not: the replica's own URL decides (a known pooler host is detected as usual).
 */
export function readReplicaEnv(env: NodeJS.ProcessEnv = process.env): SecureDatabaseModuleOptions {
  const { url: _url, urlFile: _urlFile, pooler: _pooler, directUrl: _directUrl, ...shared } = readDatabaseEnv(env);
  return { ...shared, url: env.DATABASE_REPLICA_URL, readOnly: true };
}

/**
 * `SecureDatabaseModule.forRootAsync({ name: 'replica', ...replicaDatabaseConfig.asProvider() })`, then
 * `@InjectDatabase('replica')` where reads may be slightly stale.
 */
export const replicaDatabaseConfig = registerAs('database-replica', (): SecureDatabaseModuleOptions => readReplicaEnv(process.env));
