import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type pg from 'pg';
import { SslNotActiveError } from '../errors/connection.errors.js';
import type { ServerState } from '../failover/target-session-attrs.js';
import type { TlsPolicy } from './tls-policy.js';

/** What one physical connection's TLS looks like, from both ends. */
export interface ConnectionTlsFacts {
  /** pg_stat_ssl.ssl for the server connection: this one, or behind a pooler the pooler's own (see serverLeg). */
  ssl: boolean;
  /** TLS version as the server reports it, e.g. TLSv1.3. */
  protocol?: string;
  cipher?: string;
  /** The client verified the certificate of what it connected to (chain, and host name under verify-full): the server, or the pooler. */
  verified: boolean;
  serverVersion: string;
  /**
   * Which connection `ssl`, `protocol` and `cipher` describe: `direct`, this one; `pooler-to-server`,
   * behind a pooler, the pooler's connection to the server (whose certificate check is the pooler's
   * setting, e.g. PgBouncer's server_tls_sslmode, and cannot be seen from here).
   */
  serverLeg: 'direct' | 'pooler-to-server';
  /** This client's own leg, read from its socket: the only one it can prove behind a pooler. */
  clientLeg: { encrypted: boolean; protocol?: string; cipher?: string; verified: boolean };
}

export interface AssertionOptions {
  /** A pooler sits in between: pg_stat_ssl describes its connection to the server, not ours. */
  pooled: boolean;
  /** Refuse a pooler whose connection to the server is plaintext (DATABASE_SSL_MIN_MODE=verify-full). */
  requireServerLegTls: boolean;
}

export interface AssertedConnection {
  tls: ConnectionTlsFacts;
  server: ServerState;
}

// One round trip per new connection: the server's own view of this backend, its version for the logs
// and its role for target_session_attrs and readOnly connections.
// Every object and operator is pg_catalog-qualified: the app's role can own a schema, create a view
// named pg_stat_ssl there and put it before pg_catalog in search_path (ALTER ROLE, `options` in the
// URL, PGOPTIONS), which would let an unqualified assertion read a forged `ssl = true`.
const ASSERTION_SQL =
  "SELECT s.ssl, s.version, s.cipher, pg_catalog.current_setting('server_version') AS server_version, " +
  "pg_catalog.pg_is_in_recovery() AS in_recovery, pg_catalog.current_setting('transaction_read_only') AS read_only " +
  'FROM pg_catalog.pg_stat_ssl s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()';

interface AssertionRow {
  ssl: boolean;
  version: string | null;
  cipher: string | null;
  server_version: string;
  in_recovery: boolean;
  read_only: string;
}

function socketOf(client: pg.ClientBase): Socket | undefined {
  return (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}

/**
 * Proves a new connection is what the policy demands before anything else uses it: the client socket
 * is TLS (and authorized when the mode verifies) and the server agrees in pg_stat_ssl. Behind a pooler
 * the two are different legs: the socket proves ours, pg_stat_ssl describes the pooler's connection to
 * the server, which is refused when plaintext under `requireServerLegTls` and reported otherwise.
 * Under the development plaintext opt-in it reports plaintext honestly instead of failing.
 */
export async function assertConnectionTls(client: pg.ClientBase, policy: TlsPolicy, options: AssertionOptions): Promise<AssertedConnection> {
  const socket = socketOf(client);
  const tlsSocket = socket instanceof TLSSocket ? socket : undefined;
  if (policy.encrypted) {
    if (!tlsSocket?.encrypted) throw new SslNotActiveError('the client socket is not encrypted');
    if (policy.verifiesChain && !tlsSocket.authorized) throw new SslNotActiveError('the server certificate was not verified');
  }
  const { rows } = await client.query(ASSERTION_SQL);
  const row = rows[0] as AssertionRow | undefined;
  if (policy.encrypted && row?.ssl !== true) {
    if (!options.pooled) throw new SslNotActiveError('the server reports this connection unencrypted (pg_stat_ssl)');
    if (options.requireServerLegTls) {
      throw new SslNotActiveError(
        "the pooler's connection to the server is not encrypted (pg_stat_ssl describes the pooler-to-server leg) and DATABASE_SSL_MIN_MODE=verify-full demands TLS on every leg",
      );
    }
  }
  const verified = policy.verifiesChain && tlsSocket?.authorized === true;
  return {
    tls: {
      ssl: row?.ssl === true,
      protocol: row?.version ?? undefined,
      cipher: row?.cipher ?? undefined,
      verified,
      serverVersion: row?.server_version ?? 'unknown',
      serverLeg: options.pooled ? 'pooler-to-server' : 'direct',
      clientLeg: {
        encrypted: tlsSocket?.encrypted === true,
        protocol: tlsSocket?.getProtocol() ?? undefined,
        cipher: tlsSocket?.getCipher()?.standardName,
        verified,
      },
    },
    server: { inRecovery: row?.in_recovery === true, readOnly: row?.read_only === 'on' },
  };
}
