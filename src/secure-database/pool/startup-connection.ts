import type { Logger } from '@nestjs/common';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { ConnectTimeoutError, ConnectionError, ServerRoleMismatchError, TooManyConnectionsError } from '../errors/connection.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { TLS_HANDSHAKE_RESET } from '../errors/to-database-error.js';
import { certificateExpiryWarning } from '../tls/certificate-expiry.js';
import type { DatabasePool } from './database-pool.js';

// Only what can heal by itself: refused/reset/DNS/starting up (57P03), timeouts, no free server slot,
// no primary yet (a failover in progress). Never authentication, TLS or configuration errors:
// retrying those only delays the real message.
function isTransient(error: SecureDatabaseError): boolean {
  return (
    error instanceof ConnectionError ||
    error instanceof ConnectTimeoutError ||
    error instanceof TooManyConnectionsError ||
    error instanceof ServerRoleMismatchError
  );
}

export const DIRECT_TLS_NEEDS_17 =
  'sslnegotiation=direct needs PostgreSQL 17 or later on the server (or a proxy that accepts direct TLS): remove it from DATABASE_URL';

/**
 * A server before 17 reads a direct TLS ClientHello as a startup packet of absurd length and hangs
 * up ("invalid length of startup packet"): a reset before the TLS session was established. Not
 * retried: every attempt would end the same way.
 */
function directTlsRefused(db: DatabasePool, mapped: SecureDatabaseError): boolean {
  return (
    (db.config.client as { sslnegotiation?: string }).sslnegotiation === 'direct' &&
    mapped instanceof ConnectionError &&
    mapped.message.startsWith(TLS_HANDSHAKE_RESET)
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Opens the first connection (so the TLS assertion runs) before the app starts serving, retrying
 * transient failures with exponential backoff and jitter, and logs what was established. Behind a
 * transaction pooler with DATABASE_DIRECT_URL, the direct connection is opened and checked too.
 */
export async function establishStartupConnection(db: DatabasePool, logger: Logger): Promise<void> {
  await openFirstConnection(db, logger);
  logger.log(describeConnection(db));
  const expiry = certificateExpiryWarning(db.lastCertificate);
  if (expiry) logger.warn(expiry);
  if (db.direct) {
    await openFirstConnection(db.direct, logger);
    logger.log(`Direct connection for withConnection (DATABASE_DIRECT_URL): ${describeConnection(db.direct)}`);
  }
}

async function openFirstConnection(db: DatabasePool, logger: Logger): Promise<void> {
  const { startupRetries } = db.config;
  for (let attempt = 0; ; attempt++) {
    try {
      await db.withClient(async () => undefined);
      return;
    } catch (error) {
      const mapped = db.mapError(error);
      if (directTlsRefused(db, mapped)) throw new ConfigurationError([DIRECT_TLS_NEEDS_17], { cause: { code: 'ECONNRESET' } });
      if (!isTransient(mapped) || attempt >= startupRetries) throw mapped;
      const delay = Math.min(250 * 2 ** attempt, 4000) * (0.5 + Math.random());
      logger.warn(`Database not reachable yet (${mapped.code}); attempt ${attempt + 2} of ${startupRetries + 1} in ${Math.round(delay)} ms`);
      await sleep(delay);
    }
  }
}

const identity = (verifiesHostname: boolean, verifiesChain: boolean) =>
  verifiesHostname ? 'verified (chain and host name)' : verifiesChain ? 'verified (chain only)' : 'NOT verified';

/** The startup line: where, which leg is what, the server, never the password. */
export function describeConnection(db: DatabasePool): string {
  const { target, tls, cloud, applicationName, pooler, topology } = db.config;
  const facts = db.lastTls;
  const server = db.lastServer ?? { host: target.host, port: target.port, inRecovery: false, readOnly: false };
  const where = [cloud.platform && `platform=${cloud.platform}`, cloud.databaseProvider && `provider=${cloud.databaseProvider}`].filter(Boolean).join(' ');
  const leg = (ssl: boolean | undefined, protocol?: string, cipher?: string) => (ssl ? `TLS ${protocol} (${cipher})` : 'PLAINTEXT');
  let transport: string;
  if (!tls.encrypted) {
    transport = 'PLAINTEXT (development opt-in)';
  } else if (pooler.mode === 'none') {
    transport = `${leg(facts?.ssl, facts?.protocol, facts?.cipher)}, sslmode=${tls.mode}, server identity ${identity(tls.verifiesHostname, tls.verifiesChain)}`;
  } else {
    const client = facts?.clientLeg;
    transport =
      `client-to-pooler leg ${leg(client?.encrypted, client?.protocol, client?.cipher)}, sslmode=${tls.mode}, pooler identity ${identity(tls.verifiesHostname, tls.verifiesChain)}; ` +
      `pooler-to-server leg (pg_stat_ssl) ${leg(facts?.ssl, facts?.protocol, facts?.cipher)}, its certificate check is the pooler's own setting`;
  }
  const via =
    pooler.mode === 'none'
      ? ''
      : ` through a ${pooler.mode} pooler (${pooler.detected ? `detected: ${pooler.detected}` : 'DATABASE_POOLER'}; timeouts set per ${pooler.mode === 'transaction' ? 'transaction with SET LOCAL' : 'session'})`;
  const hosts = target.hosts.length;
  const chosen =
    hosts > 1 || topology.targetSessionAttrs !== 'any' || topology.readOnly
      ? ` (host ${target.hosts.findIndex((h) => h.host === server.host && h.port === server.port) + 1} of ${hosts}, ` +
        `target_session_attrs=${topology.targetSessionAttrs}${topology.readOnly ? ', readOnly' : ''}: ${server.inRecovery ? 'standby' : 'primary'}${server.readOnly ? ', read-only' : ''})`
      : '';
  return (
    `Connected to ${server.host}:${server.port}/${target.database} as ${target.user}${chosen}${via}: ${transport}; ` +
    `PostgreSQL ${facts?.serverVersion ?? 'unknown'}; application_name=${applicationName}${where ? `; ${where}` : ''}`
  );
}
