import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { type ChannelBindingMode, resolveChannelBinding } from '../auth/channel-binding.js';
import { type CredentialSources, resolvePasswordSource } from '../credentials/password-source.js';
import type { AppEnv, SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { type LoadBalanceHosts, TARGET_SESSION_ATTRS, type TargetSessionAttrs } from '../failover/target-session-attrs.js';
import { type PoolerDecision, decidePooler } from '../pooler/pooler-mode.js';
import type { ServerTimeouts } from '../pooler/server-settings.js';
import { type TlsPolicy, resolveTlsPolicy } from '../tls/tls-policy.js';
import { type CloudFacts, defaultApplicationName, detectCloud } from './cloud-platform.js';
import { type HostPort, parseDatabaseUrl } from './database-url.js';
import { DATABASE_DEFAULTS, type PipeliningMode, type ValidatedOptions, validateSecureDatabaseOptions } from './secure-database-options.schema.js';
import { typeParsers } from './type-parsers.js';
import type { RowCase } from './row-case.js';

/** Everything the pool needs, decided once at startup. Holds the password: never log this object whole. */
export interface ResolvedDatabaseConfig {
  name?: string;
  appEnv: AppEnv;
  /** development/test: errors and logs may carry driver messages. */
  verboseErrors: boolean;
  /** `host` and `port` are the first of `hosts` (libpq's host list, tried in order for each new connection). */
  target: { host: string; port: number; hosts: HostPort[]; database: string; user: string };
  /** Which server a new connection must reach: libpq's target_session_attrs and load_balance_hosts, and the readOnly option. */
  topology: { targetSessionAttrs: TargetSessionAttrs; loadBalanceHosts: LoadBalanceHosts; readOnly: boolean };
  pooler: PoolerDecision;
  /** The server-side timeouts; in `client`'s startup parameters too, unless a pooler sits in between. */
  serverTimeouts: ServerTimeouts;
  /** Behind a transaction pooler, DATABASE_DIRECT_URL resolved with the same options: the pool withConnection uses. */
  direct?: ResolvedDatabaseConfig;
  /** The full per-connection config (password non-enumerable). */
  client: pg.ClientConfig;
  /** Where new connections get their password (a file or a provider: per connection, see credentials/). */
  credentials: CredentialSources;
  tls: TlsPolicy;
  /** channel_binding: under `require` every connection must authenticate with SCRAM-SHA-256-PLUS (auth/). */
  channelBinding: ChannelBindingMode;
  cloud: CloudFacts;
  applicationName: string;
  /** The timeouts the client enforces itself (the server-side ones are in `client`). */
  /** streamIdleMs: longest pause of a stream's consumer between rows before its connection is freed. */
  timeouts: { connectMs: number; acquireMs: number; shutdownMs: number; streamIdleMs: number };
  pool: { max: number; idleTimeoutMs: number; maxLifetimeSeconds: number };
  startupRetries: number;
  /** Most rows a buffered query may return (per-call option maxRows overrides). */
  maxRows: number;
  /**
   * DatabaseService pipelines autocommit statements when the pool is saturated (never behind a
   * transaction pooler): plain reads (`reads`, the default), reads and writes (true), or none.
   */
  pipelining: PipeliningMode;
  /** Prepared statements per connection for autocommit statements; 0 behind a transaction pooler. */
  statementCacheSize: number;
  /** DATABASE_ROW_CASE: camel renames the columns of the query helpers' and streams' rows (service/row-case.ts). */
  rowCase: RowCase;
  /** Migrations applied at startup (migrationsRun), from `dir`. */
  migrations: { run: boolean; dir: string };
  /** DATABASE_SLOW_QUERY_MS (off when unset) and DATABASE_METRICS (recorded only with a meter provider; observability/). */
  observability: { slowQueryMs?: number; metrics: boolean };
  warnings: string[];
}

export function normalizeAppEnv(value: string | undefined): AppEnv {
  const v = value?.trim().toLowerCase();
  return v === 'development' || v === 'test' ? v : 'production';
}

// libpq parameters the module honours; anything else is reported (by name only) and ignored.
const KNOWN_PARAMS = new Set([
  ...['host', 'port', 'user', 'password', 'dbname'],
  ...['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'sslnegotiation', 'channel_binding'],
  ...['connect_timeout', 'application_name', 'options'],
  ...['target_session_attrs', 'load_balance_hosts'],
]);

function readTopology(params: Record<string, string>, problems: string[]): { targetSessionAttrs: TargetSessionAttrs; loadBalanceHosts: LoadBalanceHosts } {
  const target = (params.target_session_attrs ?? 'any') as TargetSessionAttrs;
  if (!TARGET_SESSION_ATTRS.includes(target)) problems.push(`target_session_attrs in DATABASE_URL must be one of ${TARGET_SESSION_ATTRS.join(', ')}`);
  const balance = (params.load_balance_hosts ?? 'disable') as LoadBalanceHosts;
  if (balance !== 'disable' && balance !== 'random') problems.push('load_balance_hosts in DATABASE_URL must be disable or random');
  return { targetSessionAttrs: target, loadBalanceHosts: balance };
}

function readUrl(options: ValidatedOptions, problems: string[]): string | undefined {
  if (options.url || !options.urlFile) return options.url;
  try {
    return readFileSync(options.urlFile!, 'utf8').trim();
  } catch (error) {
    // Not echoed: a URL pasted here by mistake carries its password.
    const looksLikeUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(options.urlFile!.trim());
    problems.push(
      `DATABASE_URL_FILE names no readable file (${(error as NodeJS.ErrnoException).code ?? 'error'})` +
        (looksLikeUrl ? ': it holds a URL; put the URL in DATABASE_URL instead' : ': give the path of the mounted secret file'),
    );
    return undefined;
  }
}

function scrub(problems: string[], secrets: Array<string | undefined>): string[] {
  return problems.map((p) => secrets.reduce<string>((text, s) => (s && s.length >= 3 ? text.split(s).join('***') : text), p));
}

/**
 * Validates the options (joi), reads and parses the URL, applies the TLS policy and derives the pg
 * configuration. Throws one ConfigurationError listing every problem; no message carries a secret.
 */
export function resolveDatabaseConfig(input: SecureDatabaseModuleOptions, env: NodeJS.ProcessEnv = process.env): ResolvedDatabaseConfig {
  const { value: options, problems } = validateSecureDatabaseOptions(input);
  const appEnv = normalizeAppEnv(options.appEnv ?? env.APP_ENV);
  const rawUrl = readUrl(options, problems);
  const url = rawUrl ? parseDatabaseUrl(rawUrl, problems) : undefined;
  const params = url?.params ?? {};

  let connectMs = options.connectTimeoutMs;
  if (connectMs === undefined && params.connect_timeout !== undefined) {
    const seconds = Number(params.connect_timeout);
    if (!Number.isInteger(seconds) || seconds < 1) problems.push('connect_timeout in DATABASE_URL must be a whole number of seconds, at least 1');
    else connectMs = Math.max(seconds, 2) * 1000; // libpq treats values below 2 s as 2 s
  }
  connectMs ??= DATABASE_DEFAULTS.connectTimeoutMs;

  const topology = readTopology(params, problems);
  const pooler = decidePooler(options.pooler, url?.hosts ?? [], problems);
  // PgBouncer refuses an options startup parameter that sets server settings (-c …) unless it is told to ignore it.
  if (pooler.mode !== 'none' && params.options && /(^|\s)(-c|--)/.test(params.options)) {
    problems.push('options in DATABASE_URL sets server settings in the startup packet, which poolers refuse: set them per role (ALTER ROLE … SET) instead');
  }
  const tls = resolveTlsPolicy(
    {
      sslmode: params.sslmode,
      sslrootcert: params.sslrootcert,
      sslcert: params.sslcert,
      sslkey: params.sslkey,
      sslRootCert: options.sslRootCert,
      sslCert: options.sslCert,
      sslKey: options.sslKey,
      sslKeyPassphrase: options.sslKeyPassphrase,
      sslMinMode: options.sslMinMode,
      allowPlaintext: options.allowPlaintext,
      appEnv,
      env,
    },
    problems,
  );
  const channelBinding = resolveChannelBinding({ url: params.channel_binding, option: options.channelBinding, encrypted: tls.encrypted }, problems);
  const credentialWarnings: string[] = [];
  const login = resolvePasswordSource({ password: options.password, passwordFile: options.passwordFile, url, urlFile: options.url ? undefined : options.urlFile }, problems, credentialWarnings);
  const direct = resolveDirect(options, pooler, env, problems);
  const secrets = [url?.password, rawUrl, options.directUrl, typeof login.password === 'string' ? login.password : undefined, options.sslKeyPassphrase];
  if (problems.length > 0 || !url) throw new ConfigurationError(scrub(problems, secrets));

  const cloud = detectCloud(env, url.host);
  const applicationName = options.applicationName ?? params.application_name ?? defaultApplicationName(cloud, env);
  const ignored = Object.keys(params).filter((k) => !KNOWN_PARAMS.has(k));
  const warnings = [...tls.warnings, ...credentialWarnings];
  if (ignored.length) warnings.push(`DATABASE_URL parameters not used by node-postgres were ignored: ${ignored.join(', ')}`);
  if (options.directUrl && pooler.mode !== 'transaction') warnings.push('DATABASE_DIRECT_URL is only used behind a transaction pooler (DATABASE_POOLER=transaction): ignored');
  const serverTimeouts: ServerTimeouts = {
    statementTimeoutMs: options.statementTimeoutMs,
    lockTimeoutMs: options.lockTimeoutMs,
    idleInTransactionTimeoutMs: options.idleInTransactionTimeoutMs,
  };

  const types = typeParsers(options.int8, options.numeric);
  const client: pg.ClientConfig = {
    host: url.host,
    port: url.port,
    database: url.database,
    user: url.user,
    ssl: tls.ssl,
    application_name: applicationName,
    options: params.options,
    connectionTimeoutMillis: connectMs,
    keepAlive: true,
    keepAliveInitialDelayMillis: options.keepAliveIdleMs,
    // Sent in the startup packet, enforced by the server (pg's query_timeout would only stop waiting).
    // Poolers refuse them there: behind one they are set per transaction or per session instead (pooler/).
    ...(pooler.mode === 'none'
      ? {
          statement_timeout: options.statementTimeoutMs,
          lock_timeout: options.lockTimeoutMs,
          idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs,
        }
      : {}),
    // Client-side backstop for a network that swallows packets: the server's own timeout never arrives.
    query_timeout: options.statementTimeoutMs + connectMs,
    enableChannelBinding: channelBinding !== 'disable',
    ...(params.sslnegotiation === 'direct' ? { sslnegotiation: 'direct' } : {}),
    // Per pool, never pg.types.setTypeParser: that would change every pg client in the process.
    ...(types ? { types } : {}),
  };
  Object.defineProperty(client, 'password', { value: login.password, enumerable: false });

  return {
    name: options.name,
    appEnv,
    verboseErrors: appEnv !== 'production',
    target: { host: url.host, port: url.port, hosts: url.hosts, database: url.database, user: url.user },
    topology: { ...topology, readOnly: options.readOnly },
    pooler,
    serverTimeouts,
    direct,
    client,
    credentials: login.sources,
    tls,
    channelBinding,
    cloud,
    applicationName,
    timeouts: {
      connectMs,
      acquireMs: options.acquireTimeoutMs,
      shutdownMs: options.shutdownTimeoutMs,
      // A pause longer than the statement timeout dooms the stream anyway: its next read would hit statement_timeout.
      streamIdleMs: options.streamIdleTimeoutMs ?? options.statementTimeoutMs,
    },
    pool: { max: options.poolMax, idleTimeoutMs: options.poolIdleTimeoutMs, maxLifetimeSeconds: options.maxLifetimeSeconds },
    startupRetries: options.startupRetries,
    maxRows: options.maxRows,
    pipelining: pooler.mode === 'transaction' ? false : options.pipelining,
    statementCacheSize: pooler.mode === 'transaction' ? 0 : options.statementCacheSize,
    rowCase: options.rowCase,
    migrations: { run: options.migrationsRun, dir: options.migrationsDir },
    observability: { slowQueryMs: options.slowQueryMs, metrics: options.metrics },
    warnings,
  };
}

/**
 * DATABASE_DIRECT_URL, behind a transaction pooler: the same options with the direct URL and no
 * pooler, so it gets the same TLS policy, timeouts and checks. Its problems name DATABASE_DIRECT_URL.
 */
function resolveDirect(options: ValidatedOptions, pooler: PoolerDecision, env: NodeJS.ProcessEnv, problems: string[]): ResolvedDatabaseConfig | undefined {
  if (!options.directUrl || pooler.mode !== 'transaction') return undefined;
  const { directUrl, urlFile: _file, ...shared } = options;
  try {
    return resolveDatabaseConfig({ ...shared, url: directUrl, pooler: 'none', name: options.name ? `${options.name}-direct` : 'direct' }, env);
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    problems.push(...error.problems.map((p) => p.replace(/DATABASE_URL\b/g, 'DATABASE_DIRECT_URL')));
    return undefined;
  }
}
