import { connect as connectTcp, isIP, type Socket } from 'node:net';
import { type ConnectionOptions, checkServerIdentity, connect as connectTls, TLSSocket } from 'node:tls';
import type pg from 'pg';
import { type AuthenticationObservation, authenticationOf, latestAuthentication } from '../auth/observe-authentication.js';
import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { DatabasePool } from '../pool/database-pool.js';
import { localTimeoutsSql } from '../pooler/server-settings.js';
import { type PresentedCertificate, presentedChain } from '../tls/certificate-expiry.js';
import type { ConnectionTlsFacts } from '../tls/tls-assertion.js';

/** What the doctor learnt from one connection made by the module's own pool. Anything may be missing when connecting failed. */
export interface ProbeFacts {
  /** The module's error when no connection could be made (its message carries no secret). */
  error?: SecureDatabaseError;
  /** The driver's code behind `error` (SQLSTATE, ECONNREFUSED, CERT_HAS_EXPIRED …). */
  errorCode?: string;
  /** The host the connection reached (one of a host list). */
  reached?: { host: string; port: number };
  /** Milliseconds to a connection ready for use: TCP, TLS, authentication and the module's TLS assertion. */
  connectMs?: number;
  authentication?: AuthenticationObservation;
  /** The pool's TLS assertion passed and reported this (both ends of the connection). */
  tls?: ConnectionTlsFacts;
  socket?: SocketFacts;
  /** `socket` comes from a handshake of its own made after the connection failed (peekCertificate). */
  socketPeeked?: boolean;
  server?: ServerFacts;
  /** Round trips of `SELECT 1`, in milliseconds. */
  roundTripsMs?: number[];
  /** A handshake offering only TLS 1.0/1.1, tried on a connection of its own: does the endpoint accept it? */
  legacyTls?: LegacyTlsProbe;
}

export type LegacyTlsProbe = { accepted: true; protocol: string } | { accepted: false; code: string } | { accepted: undefined; reason: string };

export interface SocketFacts {
  encrypted: boolean;
  protocol?: string;
  cipher?: string;
  /** The chain verified against the configured CAs (only meaningful when the sslmode verifies). */
  authorized: boolean;
  /** Why the chain does not verify against the configured CAs, or Node's store (`sslmode=require` connects anyway). */
  authorizationError?: string;
  /** Whether the leaf names the host connected to (checked here for every mode; verify-full also enforced it). */
  hostnameError?: string;
  chain: PresentedCertificate[];
}

export interface ServerFacts {
  ssl: boolean;
  sslVersion?: string;
  clientDn?: string | null;
  serverVersion: string;
  /** current_user and session_user, when they differ. */
  roles: string[];
  superuser: boolean;
  createrole: boolean;
  createdb: boolean;
  bypassrls: boolean;
  replication: boolean;
  /** Predefined roles that reach the server's files or programs, held by the role. */
  serverAccessRoles: string[];
  /** pg_settings values (timeouts in ms), each absent when this role cannot see it. */
  settings: Partial<Record<SettingName, string>>;
  /** Tables of this database with row-level security enabled. */
  rowSecurityTables: number;
  /** Those of them whose policies this role bypasses as their owner (no FORCE ROW LEVEL SECURITY): schema.table. */
  ownedUnforcedTables: string[];
}

export type SettingName = 'password_encryption' | 'statement_timeout' | 'lock_timeout' | 'idle_in_transaction_session_timeout' | 'ssl_min_protocol_version';

const SETTING_NAMES: SettingName[] = ['password_encryption', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'ssl_min_protocol_version'];

const SERVER_ACCESS_ROLES = ['pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files'];

// Every catalog object, function and operator is qualified: the role's search_path (ALTER ROLE, the
// URL's options) could otherwise put its own pg_roles or pg_stat_ssl first (see tls/tls-assertion.ts).
const SESSION_SQL =
  'SELECT s.ssl, s.version, s.client_dn FROM pg_catalog.pg_stat_ssl s WHERE s.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()';
const ROLES_SQL =
  'SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication, ' +
  'ARRAY(SELECT p.name FROM pg_catalog.unnest($1::pg_catalog.text[]) AS p(name) ' +
  "WHERE pg_catalog.pg_has_role(r.oid, p.name::pg_catalog.name, 'MEMBER')) AS server_access " +
  'FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) ANY (ARRAY[CURRENT_USER, SESSION_USER]::pg_catalog.name[])';
// Owners bypass their tables' policies unless FORCE ROW LEVEL SECURITY; so does any role with the owner's privileges.
const ROW_SECURITY_SQL =
  'SELECT pg_catalog.count(*)::int AS tables, COALESCE(pg_catalog.array_agg(pg_catalog.format($$%I.%I$$, n.nspname, c.relname)) ' +
  "FILTER (WHERE NOT c.relforcerowsecurity AND pg_catalog.pg_has_role(CURRENT_USER, c.relowner, 'USAGE')), '{}') AS owned_unforced " +
  'FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace WHERE c.relrowsecurity';
const SETTINGS_SQL = 'SELECT s.name, s.setting FROM pg_catalog.pg_settings s WHERE s.name OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])';

const ROUND_TRIPS = 5;

// SSLRequest: length 8, code 80877103.
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

type Handshake<T> = { ok: true; value: T } | { ok: false; code: string } | { ok: undefined; reason: string };

/**
 * One TLS handshake with the endpoint, on a connection of its own and with no credentials: an
 * SSLRequest first (or TLS straight away under sslnegotiation=direct), then `inspect` on the
 * established socket. Never sends a startup packet.
 */
function tlsHandshake<T>(endpoint: { host: string; port: number; direct: boolean }, timeoutMs: number, options: ConnectionOptions, inspect: (socket: TLSSocket) => T): Promise<Handshake<T>> {
  const { host, port, direct } = endpoint;
  return new Promise((resolve) => {
    // Only the outermost socket is destroyed: destroying the TCP socket under a TLS socket as well
    // crashes Node 20 at exit (SIGSEGV) once a connection with its own CA has been made.
    let outer: { destroy(): void } | undefined;
    const done = (result: Handshake<T>) => {
      clearTimeout(timer);
      outer?.destroy();
      resolve(result);
    };
    const timer = setTimeout(() => done({ ok: undefined, reason: 'no answer in time' }), timeoutMs);
    const handshake = (transport: { socket?: Socket; host?: string; port?: number }) => {
      const secure = connectTls({
        ...options,
        ...transport,
        ...(isIP(host) ? {} : { servername: host }),
        ...(direct ? { ALPNProtocols: ['postgresql'] } : {}),
      });
      outer = secure;
      secure.once('secureConnect', () => done({ ok: true, value: inspect(secure) }));
      secure.once('error', (error: NodeJS.ErrnoException) => done({ ok: false, code: error.code ?? 'error' }));
    };
    if (direct) return handshake({ host, port });
    const tcp = connectTcp({ host, port });
    outer = tcp;
    tcp.once('error', (error: NodeJS.ErrnoException) => done({ ok: undefined, reason: error.code ?? 'connection failed' }));
    tcp.once('connect', () => tcp.write(SSL_REQUEST));
    tcp.once('data', (reply) => {
      if (reply[0] !== 0x53 /* S */) return done({ ok: undefined, reason: 'the endpoint offers no TLS' });
      handshake({ socket: tcp });
    });
  });
}

/**
 * Offers the endpoint a TLS 1.0/1.1-only handshake: whether it accepts tells its real minimum, also
 * for a role that cannot read ssl_min_protocol_version, and for whatever terminates TLS (a pooler, a proxy).
 */
export async function probeLegacyTls(endpoint: { host: string; port: number; direct: boolean }, timeoutMs: number): Promise<LegacyTlsProbe> {
  const result = await tlsHandshake(
    endpoint,
    timeoutMs,
    // OpenSSL 3 offers nothing below TLS 1.2 at its default security level.
    { minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0', rejectUnauthorized: false },
    (socket) => socket.getProtocol() ?? 'TLS < 1.2',
  );
  if (result.ok) return { accepted: true, protocol: result.value };
  if (result.ok === undefined) return { accepted: undefined, reason: result.reason };
  // Refused by this client's own TLS library, not by the server: nothing learnt.
  if (/NO_PROTOCOLS_AVAILABLE|NO_CIPHERS_AVAILABLE|NO_SUITABLE_SIGNATURE/.test(result.code)) return { accepted: undefined, reason: `this Node cannot offer TLS 1.0/1.1 (${result.code})` };
  return { accepted: false, code: result.code };
}

/**
 * After a connection failed its TLS verification: the same handshake with the configured CA and
 * client certificate but without refusing, to show what the server presents (the chain, its dates
 * and signatures, why it does not verify, whether it names the host).
 */
async function peekCertificate(config: ResolvedDatabaseConfig): Promise<SocketFacts | undefined> {
  const { host, port } = config.target;
  const ssl = config.tls.ssl || {};
  const result = await tlsHandshake(
    { host, port, direct: config.client.sslnegotiation === 'direct' },
    config.timeouts.connectMs,
    { ...ssl, rejectUnauthorized: false, checkServerIdentity: () => undefined },
    (socket) => describeSocket(socket, host),
  );
  return result.ok ? result.value : undefined;
}

function describeSocket(socket: TLSSocket, host: string): SocketFacts {
  const leaf = socket.getPeerCertificate();
  const hostnameError = leaf && Object.keys(leaf).length ? checkServerIdentity(host, leaf) : new Error('no certificate');
  const authorizationError = socket.authorizationError;
  return {
    encrypted: socket.encrypted === true,
    protocol: socket.getProtocol() ?? undefined,
    cipher: socket.getCipher()?.standardName,
    authorized: socket.authorized,
    authorizationError: authorizationError ? String((authorizationError as unknown as { code?: string }).code ?? authorizationError) : undefined,
    hostnameError: hostnameError?.message,
    chain: presentedChain(socket),
  };
}

function socketFacts(client: pg.ClientBase, host: string): SocketFacts {
  const socket = (client as unknown as { connection?: { stream?: unknown } }).connection?.stream;
  return socket instanceof TLSSocket ? describeSocket(socket, host) : { encrypted: false, authorized: false, chain: [] };
}

async function serverFacts(client: pg.ClientBase, config: ResolvedDatabaseConfig, tls: ConnectionTlsFacts | undefined): Promise<ServerFacts> {
  const session = (await client.query(SESSION_SQL)).rows[0] as { ssl: boolean; version: string | null; client_dn: string | null } | undefined;
  const roles = (await client.query(ROLES_SQL, [SERVER_ACCESS_ROLES])).rows as Array<{
    rolname: string;
    rolsuper: boolean;
    rolcreaterole: boolean;
    rolcreatedb: boolean;
    rolbypassrls: boolean;
    rolreplication: boolean;
    server_access: string[];
  }>;
  // Behind a transaction pooler the module sets the timeouts per transaction (SET LOCAL): read them inside one, as its statements run.
  const enveloped = config.pooler.mode === 'transaction';
  if (enveloped) await client.query(`BEGIN; ${localTimeoutsSql(config.serverTimeouts)}`);
  let settingRows: Array<{ name: SettingName; setting: string }>;
  try {
    settingRows = (await client.query(SETTINGS_SQL, [SETTING_NAMES])).rows;
  } finally {
    if (enveloped) await client.query('COMMIT');
  }
  const rowSecurity = (await client.query(ROW_SECURITY_SQL)).rows[0] as { tables: number; owned_unforced: string[] };
  const any = (key: 'rolsuper' | 'rolcreaterole' | 'rolcreatedb' | 'rolbypassrls' | 'rolreplication') => roles.some((r) => r[key]);
  return {
    ssl: session?.ssl === true,
    sslVersion: session?.version ?? undefined,
    clientDn: session?.client_dn,
    serverVersion: tls?.serverVersion ?? 'unknown',
    roles: roles.map((r) => r.rolname),
    superuser: any('rolsuper'),
    createrole: any('rolcreaterole'),
    createdb: any('rolcreatedb'),
    bypassrls: any('rolbypassrls'),
    replication: any('rolreplication'),
    serverAccessRoles: [...new Set(roles.flatMap((r) => r.server_access))],
    settings: Object.fromEntries(settingRows.map((r) => [r.name, r.setting])),
    rowSecurityTables: rowSecurity.tables,
    ownedUnforcedTables: rowSecurity.owned_unforced,
  };
}

/**
 * Opens one connection exactly as the module does (its DatabasePool: host list, TLS policy, the TLS
 * assertion, channel binding) and reads what is true of it: the socket, the server's own view, the
 * role, the settings, and a few round trips. Never throws for a connection problem: it is a fact.
 */
export async function probeDatabase(config: ResolvedDatabaseConfig): Promise<ProbeFacts> {
  const db = new DatabasePool(config);
  const facts: ProbeFacts = {};
  const started = performance.now();
  try {
    await db.withClient(async (client) => {
      facts.connectMs = performance.now() - started;
      const { host, port } = client as unknown as pg.Client;
      facts.reached = { host, port };
      facts.authentication = authenticationOf(client);
      facts.tls = db.lastTls;
      facts.socket = socketFacts(client, host);
      facts.server = await serverFacts(client, config, db.lastTls);
      facts.roundTripsMs = [];
      for (let i = 0; i < ROUND_TRIPS; i++) {
        const t = performance.now();
        await client.query('SELECT 1');
        facts.roundTripsMs.push(performance.now() - t);
      }
    });
    if (config.tls.encrypted && facts.reached) {
      facts.legacyTls = await probeLegacyTls({ ...facts.reached, direct: config.client.sslnegotiation === 'direct' }, config.timeouts.connectMs);
    }
  } catch (error) {
    const mapped = db.mapError(error);
    facts.error = mapped;
    const code = (mapped.cause as { code?: unknown } | undefined)?.code;
    facts.errorCode = typeof code === 'string' ? code : mapped.sqlstate;
    facts.authentication ??= latestAuthentication(config);
    // A TLS failure hides the certificate: look at it once more, without refusing it.
    // (Or an error the module does not classify, before authentication: OpenSSL's UNSPECIFIED for a SHA-1 signature, say.)
    if (config.tls.encrypted && (mapped.code === 'DB_TLS_VERIFICATION_FAILED' || (mapped.code === 'DB_QUERY_FAILED' && !facts.authentication?.method))) {
      facts.socket = await peekCertificate(config);
      facts.socketPeeked = facts.socket !== undefined;
    }
  } finally {
    await db.close();
  }
  return facts;
}
