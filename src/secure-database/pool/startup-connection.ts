import type { Logger } from '@nestjs/common';
import { ConnectTimeoutError, ConnectionError, TooManyConnectionsError } from '../errors/connection.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { DatabasePool } from './database-pool.js';

// Only what can heal by itself: refused/reset/DNS/starting up (57P03), timeouts, no free server slot.
// Never authentication, TLS or configuration errors: retrying those only delays the real message.
function isTransient(error: SecureDatabaseError): boolean {
  return error instanceof ConnectionError || error instanceof ConnectTimeoutError || error instanceof TooManyConnectionsError;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Opens the first connection (so the TLS assertion runs) before the app starts serving, retrying
 * transient failures with exponential backoff and jitter, and logs what was established.
 */
export async function establishStartupConnection(db: DatabasePool, logger: Logger): Promise<void> {
  const { startupRetries } = db.config;
  for (let attempt = 0; ; attempt++) {
    try {
      await db.withClient(async () => undefined);
      break;
    } catch (error) {
      const mapped = db.mapError(error);
      if (!isTransient(mapped) || attempt >= startupRetries) throw mapped;
      const delay = Math.min(250 * 2 ** attempt, 4000) * (0.5 + Math.random());
      logger.warn(`Database not reachable yet (${mapped.code}); attempt ${attempt + 2} of ${startupRetries + 1} in ${Math.round(delay)} ms`);
      await sleep(delay);
    }
  }
  const { target, tls, cloud, applicationName } = db.config;
  const facts = db.lastTls;
  const where = [cloud.platform && `platform=${cloud.platform}`, cloud.databaseProvider && `provider=${cloud.databaseProvider}`].filter(Boolean).join(' ');
  const transport = facts?.ssl
    ? `TLS ${facts.protocol} (${facts.cipher}), sslmode=${tls.mode}, server identity ${tls.verifiesHostname ? 'verified (chain and host name)' : tls.verifiesChain ? 'verified (chain only)' : 'NOT verified'}`
    : 'PLAINTEXT (development opt-in)';
  logger.log(
    `Connected to ${target.host}:${target.port}/${target.database} as ${target.user}: ${transport}; ` +
      `PostgreSQL ${facts?.serverVersion ?? 'unknown'}; application_name=${applicationName}${where ? `; ${where}` : ''}`,
  );
}
