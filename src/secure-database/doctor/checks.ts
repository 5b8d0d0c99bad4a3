import { ChannelBindingError } from '../auth/channel-binding.js';
import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import { AuthenticationError, SslNotActiveError, TlsVerificationError } from '../errors/connection.errors.js';
import { CERTIFICATE_EXPIRY_WARNING_DAYS, daysLeft, isWeakSignature } from '../tls/certificate-expiry.js';
import type { ProbeFacts } from './probe.js';

/** `skip`: the check needs a fact the failed connection never produced. */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

export interface DoctorCheck {
  id: string;
  status: CheckStatus;
  evidence: string;
  /** What to do about it; empty when nothing needs doing. */
  fix: string;
}

export interface DoctorInput {
  config: ResolvedDatabaseConfig;
  facts: ProbeFacts;
  env: NodeJS.ProcessEnv;
  now?: number;
}

const pass = (id: string, evidence: string): DoctorCheck => ({ id, status: 'pass', evidence, fix: '' });
const warn = (id: string, evidence: string, fix: string): DoctorCheck => ({ id, status: 'warn', evidence, fix });
const fail = (id: string, evidence: string, fix: string): DoctorCheck => ({ id, status: 'fail', evidence, fix });
const skip = (id: string, evidence = 'not checked: no connection was established'): DoctorCheck => ({ id, status: 'skip', evidence, fix: '' });

const FIX_VERIFY_FULL = 'remove sslmode=require from DATABASE_URL (verify-full is the default) and set DATABASE_SSL_ROOT_CERT to the CA that signed the server certificate (none for a public CA)';
const EXPIRY_CODES = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const PROTOCOL_CODE = /PROTOCOL|VERSION/i;
const SIGNATURE_CODE = /MD_TOO_WEAK|KEY_TOO_SMALL|SIGALG/i;

/** The error belongs to this check (a connection that failed because of it). */
type OwnedCheck = 'tls' | 'tls-protocol' | 'server-identity' | 'certificate-expiry' | 'certificate-signatures' | 'channel-binding';

function failedOn(facts: ProbeFacts, id: OwnedCheck): boolean {
  const { error, errorCode = '' } = facts;
  if (!error) return false;
  switch (id) {
    case 'tls':
      return error instanceof SslNotActiveError;
    case 'tls-protocol':
      return error instanceof TlsVerificationError && PROTOCOL_CODE.test(errorCode);
    case 'certificate-expiry':
      return error instanceof TlsVerificationError && EXPIRY_CODES.has(errorCode);
    case 'certificate-signatures':
      return error instanceof TlsVerificationError && SIGNATURE_CODE.test(errorCode);
    case 'server-identity':
      return error instanceof TlsVerificationError && !EXPIRY_CODES.has(errorCode) && !PROTOCOL_CODE.test(errorCode) && !SIGNATURE_CODE.test(errorCode);
    case 'channel-binding':
      return error instanceof ChannelBindingError;
  }
}

function connection({ config, facts }: DoctorInput): DoctorCheck {
  const { target } = config;
  if (facts.error) {
    return fail(
      'connection',
      `no connection to ${target.host}:${target.port}/${target.database} as ${target.user}: ${facts.error.message}${facts.errorCode ? ` [${facts.errorCode}]` : ''}`,
      connectionFix(facts, []),
    );
  }
  const where = facts.reached ? `${facts.reached.host}:${facts.reached.port}` : `${target.host}:${target.port}`;
  return pass('connection', `${where}/${target.database} as ${target.user}, PostgreSQL ${facts.server?.serverVersion ?? 'unknown'}, through the module's own pool and TLS assertion`);
}

/** Where a failed connection's fix is: the other checks that failed, else the credentials or the network. */
function connectionFix(facts: ProbeFacts, failed: string[]): string {
  if (failed.length) return `see ${failed.join(', ')}`;
  if (facts.error instanceof AuthenticationError) return 'check the user name and password in DATABASE_URL, and that pg_hba.conf lets this role in from here over TLS';
  return 'check the host and port, that the server is up, and that the network lets this machine reach it (firewall, allow-list, private network)';
}

function configuration({ config }: DoctorInput): DoctorCheck {
  const { tls, pooler } = config;
  const summary =
    `sslmode=${tls.mode} (CA: ${tls.caSource}), DATABASE_SSL_MIN_MODE=${tls.minMode}, channel_binding=${config.channelBinding}, ` +
    `pooler=${pooler.mode}, connect timeout ${config.timeouts.connectMs} ms`;
  if (config.warnings.length === 0) return pass('configuration', `resolved by the module: ${summary}`);
  return warn('configuration', `resolved by the module with warnings: ${summary}; ${config.warnings.join('; ')}`, 'act on each warning (the module logs them at every start)');
}

function tlsActive({ config, facts }: DoctorInput): DoctorCheck {
  if (failedOn(facts, 'tls')) {
    return fail('tls', facts.error!.message, 'enable TLS on the server (ssl = on) or connect to an endpoint that offers it; the module never accepts plaintext in production');
  }
  if (!config.tls.encrypted) {
    return fail('tls', 'PLAINTEXT: sslmode=disable under the development opt-in (DATABASE_ALLOW_PLAINTEXT): credentials and data cross the network readable', 'remove sslmode=disable and DATABASE_ALLOW_PLAINTEXT');
  }
  const { socket, server, tls } = facts;
  if (!socket || !server || !tls) return skip('tls');
  const leg = tls.serverLeg === 'pooler-to-server' ? ' (pooler-to-server leg)' : '';
  const evidence = `socket: ${socket.encrypted ? `${socket.protocol} ${socket.cipher}` : 'not TLS'}; pg_stat_ssl${leg}: ssl = ${server.ssl}${server.sslVersion ? `, ${server.sslVersion}` : ''}`;
  if (!socket.encrypted) return fail('tls', evidence, 'enable TLS on the server');
  if (!server.ssl) {
    return tls.serverLeg === 'pooler-to-server'
      ? warn('tls', evidence, "turn on the pooler's TLS to the server (PgBouncer: server_tls_sslmode = verify-full), or DATABASE_SSL_MIN_MODE=verify-full to refuse it")
      : fail('tls', evidence, 'the server sees this connection unencrypted: a TLS-terminating proxy forwards it in plaintext; connect to the server itself');
  }
  return pass('tls', evidence);
}

const TLS_VERSIONS: Record<string, number> = { SSLv3: 0, TLSv1: 1, 'TLSv1.1': 1.1, 'TLSv1.2': 1.2, 'TLSv1.3': 1.3 };

function tlsProtocol({ facts }: DoctorInput): DoctorCheck {
  if (failedOn(facts, 'tls-protocol')) return fail('tls-protocol', facts.error!.message, 'let the server offer TLS 1.2 or later (ssl_min_protocol_version = TLSv1.2)');
  const protocol = facts.socket?.protocol;
  if (!protocol) return skip('tls-protocol', facts.error ? undefined : 'not checked: the connection is not TLS');
  const version = TLS_VERSIONS[protocol] ?? 0;
  if (version < 1.2) return fail('tls-protocol', `${protocol} negotiated`, 'let the server offer TLS 1.2 or later');
  if (version < 1.3) return warn('tls-protocol', `${protocol} negotiated: the server offers no TLS 1.3`, "enable TLS 1.3 on the server (ssl_max_protocol_version unset; a current OpenSSL), or the provider's newer endpoint");
  return pass('tls-protocol', `${protocol} negotiated (${facts.socket!.cipher})`);
}

function serverIdentity({ config, facts }: DoctorInput): DoctorCheck {
  const { tls } = config;
  if (!tls.encrypted) return fail('server-identity', 'no TLS: nothing identifies the server', 'use TLS with sslmode=verify-full');
  const socket = facts.socket;
  const host = facts.reached?.host ?? config.target.host;
  const names = socket && (socket.hostnameError ? `the certificate does not name ${host}` : `the certificate names ${host}`);
  const FIX = 'give the CA that signed the server certificate in DATABASE_SSL_ROOT_CERT, and connect with a host name the certificate names';
  if (failedOn(facts, 'server-identity')) return fail('server-identity', `${facts.error!.message}${names ? `; ${names}` : ''}`, FIX);
  if (!socket?.encrypted) return skip('server-identity');
  // The connection was refused and a second handshake shows why: the chain does not verify.
  if (facts.socketPeeked && tls.verifiesChain && !socket.authorized && EXPIRY_CODES.has(socket.authorizationError ?? '')) {
    return skip('server-identity', `not judged: the chain is refused for its dates (${socket.authorizationError}), see certificate-expiry; ${names}`);
  }
  if (facts.socketPeeked && tls.verifiesChain && !socket.authorized) {
    return fail('server-identity', `the chain does not verify against ${tls.caSource}: ${socket.authorizationError ?? 'unknown reason'}; ${names}`, FIX);
  }
  if (tls.verifiesHostname && socket.authorized) {
    return pass('server-identity', `verified (chain and host name, sslmode=verify-full, CA: ${tls.caSource}): ${names}`);
  }
  if (tls.verifiesChain && socket.authorized) {
    return warn(
      'server-identity',
      `chain verified against ${tls.caSource}, host name not checked (sslmode=verify-ca): ${names}`,
      socket.hostnameError
        ? 'keep verify-ca only with a CA dedicated to this database; otherwise connect with a host name on the certificate and use verify-full'
        : 'use sslmode=verify-full: the certificate already names this host',
    );
  }
  const wouldFail = socket.authorizationError ? `verification would fail: ${socket.authorizationError}` : "the chain would verify against Node's CA store";
  return warn(
    'server-identity',
    `NOT verified (sslmode=${tls.mode}): encrypted, but a man in the middle with any certificate would be accepted; ${wouldFail}; ${names}`,
    FIX_VERIFY_FULL,
  );
}

function certificateExpiry({ facts, now = Date.now() }: DoctorInput): DoctorCheck {
  const chain = facts.socket?.chain ?? [];
  if (chain.length === 0) {
    if (failedOn(facts, 'certificate-expiry')) return fail('certificate-expiry', facts.error!.message, 'renew the server certificate now');
    return skip('certificate-expiry', facts.error ? undefined : 'not checked: no certificate was presented');
  }
  const first = chain.reduce((a, c) => (c.validTo < a.validTo ? c : a));
  const left = daysLeft(first.validTo, now);
  const when = first.validTo.toISOString().slice(0, 10);
  const leaf = chain[0];
  const detail = first === leaf ? `server certificate ${leaf.subject}` : `${first.subject} (the first to expire in the chain of ${leaf.subject})`;
  const notYet = chain.find((c) => c.validFrom.getTime() > now);
  if (notYet) return fail('certificate-expiry', `${notYet.subject} is not valid before ${notYet.validFrom.toISOString()}`, "fix the certificate's dates or the server's clock");
  if (first.validTo.getTime() <= now) return fail('certificate-expiry', `${detail} expired on ${when}`, 'renew the server certificate now: verifying clients refuse it');
  if (left < CERTIFICATE_EXPIRY_WARNING_DAYS) {
    return warn(
      'certificate-expiry',
      `${detail} expires in ${left} day${left === 1 ? '' : 's'} (${when})`,
      `renew it before ${when}: from then on every new connection fails verification (the module's startup log warns and its health check reports certificateDaysLeft)`,
    );
  }
  return pass('certificate-expiry', `${detail} valid until ${when} (${left} days)`);
}

function certificateSignatures({ facts }: DoctorInput): DoctorCheck {
  const chain = facts.socket?.chain ?? [];
  if (chain.length === 0) {
    if (failedOn(facts, 'certificate-signatures')) return fail('certificate-signatures', facts.error!.message, 'reissue the server certificate with a SHA-256 (or stronger) signature and a 2048-bit RSA or P-256 key');
    return skip('certificate-signatures', facts.error ? undefined : 'not checked: no certificate was presented');
  }
  const evidence = chain.map((c) => `${c.subject}: ${c.signatureAlgorithm}, ${c.key}${c.selfSigned ? ' (root)' : ''}`).join(' <- ');
  // A root's signature on itself proves nothing and is never checked: only the signatures below it count.
  const weak = chain.filter((c) => !c.selfSigned && isWeakSignature(c.signatureAlgorithm));
  if (weak.length) return fail('certificate-signatures', `${evidence}; signed with a broken hash: ${weak.map((c) => c.subject).join(', ')}`, 'reissue the certificate with a SHA-256 (or stronger) signature');
  const smallRsa = chain.filter((c) => c.rsaBits !== undefined && c.rsaBits < 2048);
  if (smallRsa.length) return warn('certificate-signatures', `${evidence}; RSA keys under 2048 bits: ${smallRsa.map((c) => c.subject).join(', ')}`, 'reissue with an RSA 2048+ or EC P-256 key');
  return pass('certificate-signatures', evidence);
}

function channelBinding({ config, facts }: DoctorInput): DoctorCheck {
  const mode = config.channelBinding;
  const auth = facts.authentication;
  if (failedOn(facts, 'channel-binding')) return fail('channel-binding', `refused by channel_binding=require: ${facts.error!.message.replace(/^channel binding required \(channel_binding=require\) but /, '').replace(/\. Fix:.*$/s, '')}`, 'let the server authenticate this role with scram-sha-256 over TLS (pg_hba.conf, the password stored as SCRAM), or use channel_binding=prefer');
  if (!auth?.method) return skip('channel-binding');
  if (auth.method === 'scram-sha-256-plus') return pass('channel-binding', `in use: SCRAM-SHA-256-PLUS (tls-server-end-point), channel_binding=${mode}`);
  const offered = auth.offeredMechanisms?.includes('SCRAM-SHA-256-PLUS');
  if (auth.method === 'scram-sha-256' && offered) {
    return warn('channel-binding', `not in use: the server offers SCRAM-SHA-256-PLUS, channel_binding=${mode}`, 'add channel_binding=require to DATABASE_URL (or DATABASE_CHANNEL_BINDING=require): a man in the middle can then not relay the login');
  }
  if (auth.method === 'scram-sha-256') {
    return warn('channel-binding', `not available: the server offers ${auth.offeredMechanisms?.join(', ') || 'no'} SASL mechanism(s), not SCRAM-SHA-256-PLUS (a pooler in between?)`, 'connect to the server itself, or a pooler that supports channel binding');
  }
  return warn('channel-binding', `not possible: the server did not use SCRAM (${auth.method})`, 'see authentication');
}

function authentication({ facts }: DoctorInput): DoctorCheck {
  const auth = facts.authentication;
  if (!auth?.method) return skip('authentication');
  switch (auth.method) {
    case 'scram-sha-256-plus':
    case 'scram-sha-256':
      return pass('authentication', `${auth.method === 'scram-sha-256-plus' ? 'SCRAM-SHA-256-PLUS' : 'SCRAM-SHA-256'}: the password never crossed the connection and the server proved it knows it${auth.serverProofReceived ? '' : ' (no proof seen)'}`);
    case 'md5':
      return fail(
        'authentication',
        'md5: the server asked for an md5 hash of the password (the stored hash is as good as the password, and the exchange can be brute-forced offline); deprecated since PostgreSQL 18',
        "store the password as SCRAM (password_encryption = 'scram-sha-256', then ALTER ROLE … PASSWORD) and use scram-sha-256 in pg_hba.conf",
      );
    case 'password':
      return fail('authentication', 'password: the server asked for the password itself, in cleartext inside the connection', 'use scram-sha-256 in pg_hba.conf');
    case 'none':
      if (facts.server?.clientDn) return pass('authentication', `no password asked: the server verified a client certificate (${facts.server.clientDn})`);
      return fail('authentication', 'none: the server asked for no credentials (trust): anyone who reaches it connects as this role', 'replace trust with scram-sha-256 in pg_hba.conf');
  }
}

function rolePrivileges({ facts }: DoctorInput): DoctorCheck {
  const server = facts.server;
  if (!server) return skip('role-privileges');
  const who = server.roles.join(' / ') || 'unknown';
  const dangerous = [
    server.superuser && 'SUPERUSER',
    server.createrole && 'CREATEROLE',
    server.bypassrls && 'BYPASSRLS',
    server.replication && 'REPLICATION',
    server.createdb && 'CREATEDB',
    ...server.serverAccessRoles.map((r) => `member of ${r}`),
  ].filter((x): x is string => Boolean(x));
  if (dangerous.length === 0) return pass('role-privileges', `${who}: not a superuser; no CREATEROLE, CREATEDB, BYPASSRLS, REPLICATION, nor server file or program access`);
  return fail(
    'role-privileges',
    `${who}: ${dangerous.join(', ')}`,
    'connect as a role of its own with only the privileges the app needs (CREATE ROLE app LOGIN …; GRANT on its schema and tables); run migrations with another role',
  );
}

/** Row-Level Security policies (tenant isolation) apply to the app's role, or the doctor says why not. */
function rowLevelSecurity({ config, facts }: DoctorInput): DoctorCheck {
  const server = facts.server;
  if (!server) return skip('row-level-security');
  const who = server.roles.join(' / ') || 'unknown';
  const bypass = [server.superuser && 'SUPERUSER', server.bypassrls && 'BYPASSRLS'].filter(Boolean).join(', ');
  if (bypass) {
    return warn('row-level-security', `${who}: ${bypass}: no row-level security policy applies to this role`, 'connect as a role without SUPERUSER and BYPASSRLS (ALTER ROLE … NOBYPASSRLS) so policies isolate tenants');
  }
  const owned = server.ownedUnforcedTables;
  if (owned.length > 0) {
    // Table names are schema facts: named in development only, as in errors.
    const which = config.verboseErrors ? `: ${owned.slice(0, 10).join(', ')}${owned.length > 10 ? ', …' : ''}` : '';
    return warn(
      'row-level-security',
      `${owned.length} table(s) with row-level security are owned by ${who} without FORCE ROW LEVEL SECURITY, so their policies do not apply to it${which}`,
      'let another role own them (the migration role of DATABASE_MIGRATION_URL), or ALTER TABLE … FORCE ROW LEVEL SECURITY',
    );
  }
  if (server.rowSecurityTables === 0) return pass('row-level-security', `${who}: no table has row-level security enabled (nothing to bypass)`);
  return pass('row-level-security', `${server.rowSecurityTables} table(s) with row-level security, each forced or owned by another role: their policies apply to ${who}`);
}

function passwordEncryption({ facts }: DoctorInput): DoctorCheck {
  const value = facts.server?.settings.password_encryption;
  if (!facts.server) return skip('password-encryption');
  if (value === undefined) return warn('password-encryption', 'not visible to this role', 'check it as an administrator: SHOW password_encryption');
  if (value === 'scram-sha-256') return pass('password-encryption', 'scram-sha-256: new passwords are stored as SCRAM verifiers');
  return warn('password-encryption', `${value}: passwords set from now on are stored as md5 hashes`, "ALTER SYSTEM SET password_encryption = 'scram-sha-256' (or the provider's setting), then set the role's password again");
}

const TIMEOUTS: Array<[name: 'statement_timeout' | 'lock_timeout' | 'idle_in_transaction_session_timeout', key: 'statementTimeoutMs' | 'lockTimeoutMs' | 'idleInTransactionTimeoutMs']> = [
  ['statement_timeout', 'statementTimeoutMs'],
  ['lock_timeout', 'lockTimeoutMs'],
  ['idle_in_transaction_session_timeout', 'idleInTransactionTimeoutMs'],
];

function timeouts({ config, facts }: DoctorInput): DoctorCheck {
  const settings = facts.server?.settings;
  if (!settings) return skip('timeouts');
  const seen = TIMEOUTS.map(([name, key]) => ({ name, value: settings[name], configured: config.serverTimeouts[key] }));
  const evidence = `${seen.map((s) => `${s.name}=${s.value === undefined ? 'unknown' : `${s.value} ms`}`).join(', ')}${config.pooler.mode === 'transaction' ? ' (inside a transaction, as the module runs each statement behind a transaction pooler)' : ''}`;
  const off = seen.filter((s) => s.value === '0');
  if (off.length) {
    return fail('timeouts', `${evidence}: ${off.map((s) => s.name).join(', ')} off for this session`, 'something between the app and the server dropped the settings the module sends: set DATABASE_POOLER for a pooler, or set the timeouts on the role (ALTER ROLE … SET)');
  }
  const differ = seen.filter((s) => s.value !== undefined && Number(s.value) !== s.configured);
  if (differ.length) {
    return warn('timeouts', `${evidence}; configured ${differ.map((s) => `${s.name}=${s.configured} ms`).join(', ')}`, 'the session does not have the values the module configured: check the role settings (ALTER ROLE … SET) and the `options` URL parameter');
  }
  return pass('timeouts', evidence);
}

function serverTlsMinimum({ facts }: DoctorInput): DoctorCheck {
  const legacy = facts.legacyTls;
  const setting = facts.server?.settings.ssl_min_protocol_version;
  if (!legacy && setting === undefined) return skip('server-tls-minimum', facts.error ? undefined : 'not checked: the connection is not TLS');
  const behindPooler = facts.tls?.serverLeg === 'pooler-to-server' ? ' (the handshake is the pooler\'s; the setting is the server\'s behind it)' : '';
  const parts = [
    setting !== undefined ? `ssl_min_protocol_version=${setting}` : 'ssl_min_protocol_version not visible to this role',
    legacy?.accepted === true && `a TLS 1.0/1.1-only handshake was accepted (${legacy.protocol})`,
    legacy?.accepted === false && `a TLS 1.0/1.1-only handshake was refused (${legacy.code})`,
    legacy?.accepted === undefined && legacy && `the TLS 1.0/1.1 handshake test was inconclusive: ${legacy.reason}`,
  ].filter(Boolean);
  const evidence = `${parts.join('; ')}${behindPooler}`;
  const fix = "ssl_min_protocol_version = 'TLSv1.2' on the server (the default since PostgreSQL 14), or the provider's TLS setting";
  if (legacy?.accepted === true || (setting !== undefined && (TLS_VERSIONS[setting] ?? 0) < 1.2)) {
    return warn('server-tls-minimum', `${evidence}: the endpoint accepts TLS older than 1.2 from other clients`, fix);
  }
  if (legacy?.accepted === false || setting !== undefined) return pass('server-tls-minimum', evidence);
  return warn('server-tls-minimum', evidence, 'check it as an administrator: SHOW ssl_min_protocol_version');
}

function appEnv({ config }: DoctorInput): DoctorCheck {
  if (config.appEnv === 'production') return pass('app-env', 'production: errors and logs carry codes only, plaintext cannot be allowed');
  return warn('app-env', `APP_ENV=${config.appEnv}: errors carry driver messages and DATABASE_ALLOW_PLAINTEXT is honoured`, 'leave APP_ENV unset (or production) wherever real data lives');
}

function nodeTlsRejectUnauthorized({ env }: DoctorInput): DoctorCheck {
  const value = env.NODE_TLS_REJECT_UNAUTHORIZED;
  if (value === '0') {
    return fail('node-tls-reject-unauthorized', 'NODE_TLS_REJECT_UNAUTHORIZED=0: every TLS connection of the process (HTTP clients too) accepts any certificate', 'unset NODE_TLS_REJECT_UNAUTHORIZED; give the CA in DATABASE_SSL_ROOT_CERT instead');
  }
  return pass('node-tls-reject-unauthorized', value === undefined ? 'not set: certificates are verified process-wide' : `NODE_TLS_REJECT_UNAUTHORIZED=${value}: not disabled`);
}

function platform({ config }: DoctorInput): DoctorCheck {
  const { cloud, pooler } = config;
  const poolerText = pooler.mode === 'none' ? 'no pooler' : `${pooler.mode} pooler (${pooler.detected ?? 'DATABASE_POOLER'})`;
  return pass(
    'platform',
    `platform=${cloud.platform ?? 'none detected'}, database provider=${cloud.databaseProvider ?? 'none detected'}, ${poolerText}, application_name=${config.applicationName}`,
  );
}

function latency({ config, facts }: DoctorInput): DoctorCheck {
  const samples = facts.roundTripsMs;
  if (facts.connectMs === undefined || !samples?.length) return skip('latency');
  const sorted = [...samples].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const auth = facts.authentication?.authenticatedAfterMs;
  const evidence =
    `connect ${facts.connectMs.toFixed(1)} ms${auth !== undefined ? ` (TCP, TLS and authentication ${auth.toFixed(1)} ms, then the TLS assertion)` : ''}; ` +
    `round trip median ${median.toFixed(2)} ms, max ${sorted[sorted.length - 1].toFixed(2)} ms over ${samples.length} x SELECT 1`;
  if (facts.connectMs > config.timeouts.connectMs / 2) {
    return warn('latency', `${evidence}: over half the connect timeout (${config.timeouts.connectMs} ms)`, 'raise DATABASE_CONNECT_TIMEOUT_MS, or run the app closer to the database');
  }
  if (median > 50) return warn('latency', `${evidence}: every query pays this`, 'run the app in the same region as the database');
  return pass('latency', evidence);
}

/** Every check, in report order. */
export function evaluateChecks(input: DoctorInput): DoctorCheck[] {
  const checks = [
    connection,
    configuration,
    tlsActive,
    tlsProtocol,
    serverIdentity,
    certificateExpiry,
    certificateSignatures,
    channelBinding,
    authentication,
    rolePrivileges,
    rowLevelSecurity,
    passwordEncryption,
    timeouts,
    serverTlsMinimum,
    appEnv,
    nodeTlsRejectUnauthorized,
    platform,
    latency,
  ].map((check) => check(input));
  const failedElsewhere = checks.filter((c) => c.status === 'fail' && c.id !== 'connection').map((c) => c.id);
  return checks.map((c) => (c.id === 'connection' && c.status === 'fail' ? { ...c, fix: connectionFix(input.facts, failedElsewhere) } : c));
}
