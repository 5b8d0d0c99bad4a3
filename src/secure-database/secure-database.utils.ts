import { DatabaseService } from './service/database.service.js';
import { DEFAULT_CONNECTION_NAME } from './secure-database.constants.js';

const named = (name: string | undefined, kind: string) => `${name ?? DEFAULT_CONNECTION_NAME}SecureDatabase${kind}`;

/** Token of the raw pg.Pool (`@InjectPool()`), for what DatabaseService does not offer. */
export function getPoolToken(name?: string): string {
  return named(name, 'Pool');
}

/** Token of the DatabaseService; the class itself for the default connection, so it injects by type. */
export function getDatabaseServiceToken(name?: string): string | typeof DatabaseService {
  return !name || name === DEFAULT_CONNECTION_NAME ? DatabaseService : named(name, 'Service');
}

/** Token of the DatabasePool (pool + TLS assertion + drain) behind a connection. */
export function getDatabasePoolToken(name?: string): string {
  return named(name, 'DatabasePool');
}

export function getSecureDatabaseOptionsToken(name?: string): string {
  return named(name, 'Options');
}
