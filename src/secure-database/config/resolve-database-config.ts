import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { ConfigurationError } from '../errors/configuration.errors.js';
import type { AppEnv, SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { type TlsPolicy, resolveTlsPolicy } from '../tls/tls-policy.js';
import { type CloudFacts, defaultApplicationName, detectCloud } from './cloud-platform.js';
import { parseDatabaseUrl } from './database-url.js';
import { DATABASE_DEFAULTS, type ValidatedOptions, validateSecureDatabaseOptions } from './secure-database-options.schema.js';

/** Everything the pool needs, decided once at startup. Holds the password: never log this object whole. */
export interface ResolvedDatabaseConfig {
  name?: string;
  appEnv: AppEnv;
  /** development/test: errors and logs may carry driver messages. */
  verboseErrors: boolean;
  target: { host: string; port: number; database: string; user: string };
  /** The full per-connection config (password non-enumerable). */
  client: pg.ClientConfig;
  tls: TlsPolicy;
  cloud: CloudFacts;
  applicationName: string;
  /** The timeouts the client enforces itself (the server-side ones are in `client`). */
  timeouts: { connectMs: number; acquireMs: number; shutdownMs: number };
  pool: { max: number; idleTimeoutMs: number; maxLifetimeSeconds: number };
  startupRetries: number;
  /** Most rows a buffered query may return (per-call option maxRows overrides). */
  maxRows: number;
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
]);

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

  if (params.channel_binding === 'require') {
    problems.push('channel_binding=require is not supported yet: remove it or use channel_binding=prefer');
  }
  const tls = resolveTlsPolicy(
    {
      sslmode: params.sslmode,
      sslrootcert: params.sslrootcert,
      sslcert: params.sslcert,
      sslkey: params.sslkey,
      sslRootCert: options.sslRootCert,
      sslMinMode: options.sslMinMode,
      allowPlaintext: options.allowPlaintext,
      appEnv,
      env,
    },
    problems,
  );
  if (problems.length > 0 || !url) throw new ConfigurationError(scrub(problems, [url?.password, rawUrl]));

  const cloud = detectCloud(env, url.host);
  const applicationName = options.applicationName ?? params.application_name ?? defaultApplicationName(cloud, env);
  const ignored = Object.keys(params).filter((k) => !KNOWN_PARAMS.has(k));
  const warnings = [...tls.warnings];
  if (ignored.length) warnings.push(`DATABASE_URL parameters not used by node-postgres were ignored: ${ignored.join(', ')}`);

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
    statement_timeout: options.statementTimeoutMs,
    lock_timeout: options.lockTimeoutMs,
    idle_in_transaction_session_timeout: options.idleInTransactionTimeoutMs,
    // Client-side backstop for a network that swallows packets: the server's own timeout never arrives.
    query_timeout: options.statementTimeoutMs + connectMs,
    enableChannelBinding: params.channel_binding === 'prefer',
    ...(params.sslnegotiation === 'direct' ? { sslnegotiation: 'direct' } : {}),
  };
  Object.defineProperty(client, 'password', { value: url.password, enumerable: false });

  return {
    name: options.name,
    appEnv,
    verboseErrors: appEnv !== 'production',
    target: { host: url.host, port: url.port, database: url.database, user: url.user },
    client,
    tls,
    cloud,
    applicationName,
    timeouts: { connectMs, acquireMs: options.acquireTimeoutMs, shutdownMs: options.shutdownTimeoutMs },
    pool: { max: options.poolMax, idleTimeoutMs: options.poolIdleTimeoutMs, maxLifetimeSeconds: options.maxLifetimeSeconds },
    startupRetries: options.startupRetries,
    maxRows: options.maxRows,
    warnings,
  };
}
