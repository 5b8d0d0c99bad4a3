import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type pg from 'pg';
import { SslNotActiveError } from '../errors/connection.errors.js';
import type { TlsPolicy } from './tls-policy.js';

/** What one physical connection's TLS looks like, from both ends. */
export interface ConnectionTlsFacts {
  /** pg_stat_ssl.ssl for this backend. */
  ssl: boolean;
  /** TLS version as the server reports it, e.g. TLSv1.3. */
  protocol?: string;
  cipher?: string;
  /** The client verified the server's certificate chain (and host name under verify-full). */
  verified: boolean;
  serverVersion: string;
}

// One round trip per new connection: the server's own view of this backend plus its version for the logs.
// Every object and operator is pg_catalog-qualified: the app's role can own a schema, create a view
// named pg_stat_ssl there and put it before pg_catalog in search_path (ALTER ROLE, `options` in the
// URL, PGOPTIONS), which would let an unqualified assertion read a forged `ssl = true`.
const ASSERTION_SQL =
  "SELECT s.ssl, s.version, s.cipher, pg_catalog.current_setting('server_version') AS server_version " +
  'FROM pg_catalog.pg_stat_ssl s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()';

function socketOf(client: pg.ClientBase): Socket | undefined {
  return (client as unknown as { connection?: { stream?: Socket } }).connection?.stream;
}

/**
 * Proves a new connection is what the policy demands before anything else uses it: the client socket
 * is TLS (and authorized when the mode verifies) and the server agrees in pg_stat_ssl. Under the
 * development plaintext opt-in it reports plaintext honestly instead of failing.
 */
export async function assertConnectionTls(client: pg.ClientBase, policy: TlsPolicy): Promise<ConnectionTlsFacts> {
  const socket = socketOf(client);
  const tlsSocket = socket instanceof TLSSocket ? socket : undefined;
  if (policy.encrypted) {
    if (!tlsSocket?.encrypted) throw new SslNotActiveError('the client socket is not encrypted');
    if (policy.verifiesChain && !tlsSocket.authorized) throw new SslNotActiveError('the server certificate was not verified');
  }
  const { rows } = await client.query(ASSERTION_SQL);
  const row = rows[0] as { ssl: boolean; version: string | null; cipher: string | null; server_version: string } | undefined;
  if (policy.encrypted && row?.ssl !== true) throw new SslNotActiveError('the server reports this connection unencrypted (pg_stat_ssl)');
  return {
    ssl: row?.ssl === true,
    protocol: row?.version ?? undefined,
    cipher: row?.cipher ?? undefined,
    verified: policy.verifiesChain && tlsSocket?.authorized === true,
    serverVersion: row?.server_version ?? 'unknown',
  };
}
