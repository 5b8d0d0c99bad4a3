import type { ModuleMetadata, Type, InjectionToken, OptionalFactoryDependency } from '@nestjs/common';
import type { PasswordProvider } from '../credentials/password-source.js';
import type { QueryEventHook } from '../observability/query-event.js';

export type SslMode = 'disable' | 'allow' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';
export type MinimumSslMode = 'require' | 'verify-ca' | 'verify-full';
export type AppEnv = 'production' | 'development' | 'test';

/**
 * What an application passes to SecureDatabaseModule. Every field has a DATABASE_* environment twin
 * read by `databaseConfig` (named in brackets). Numbers may be given as strings: they are validated,
 * never silently dropped.
 */
export interface SecureDatabaseModuleOptions {
  /** Connection name, for several connections in one app. Default: the default connection. */
  name?: string;
  /**
   * postgres:// or postgresql:// URL (DATABASE_URL). libpq parameters sslmode, sslrootcert, sslcert, sslkey,
   * connect_timeout, application_name, options, target_session_attrs and load_balance_hosts are honoured,
   * and libpq's host lists (`h1:5432,h2:5433`): each new connection tries the hosts in order.
   */
  url?: string;
  /** Path of a file holding the URL, for Docker/Kubernetes secrets (DATABASE_URL_FILE). Read again for new connections when it changes: its user and password apply. */
  urlFile?: string;
  /**
   * The password (DATABASE_PASSWORD), wins over one in the URL; or a function called for each new
   * physical connection when the server asks for a password, for IAM tokens (AWS RDS, Cloud SQL,
   * Azure Entra ID). A function is bounded by the connect timeout; its failure is a sanitized
   * CredentialProviderError; its value is never logged.
   */
  password?: string | PasswordProvider;
  /**
   * Path of a file holding only the password (DATABASE_PASSWORD_FILE), wins over one in the URL. Read
   * again for new connections when it changes, so a rotated secret needs no restart.
   */
  passwordFile?: string;
  /** CA bundle as PEM text or a path to one (DATABASE_SSL_ROOT_CERT). Default: sslrootcert from the URL, else Node's CA store. A path is read again when it changes. */
  sslRootCert?: string;
  /** Client certificate for mutual TLS, PEM text or a path (DATABASE_SSL_CERT); wins over sslcert in the URL. A path is read again when it changes. */
  sslCert?: string;
  /** The client certificate's private key, PEM text or a path (DATABASE_SSL_KEY); wins over sslkey in the URL. A path is read again when it changes. */
  sslKey?: string;
  /** Passphrase of an encrypted client key (DATABASE_SSL_KEY_PASSPHRASE). */
  sslKeyPassphrase?: string;
  /** Refuse to start with a weaker effective sslmode (DATABASE_SSL_MIN_MODE). Default `require`. */
  sslMinMode?: MinimumSslMode;
  /** Allow sslmode=disable/allow/prefer; only honoured when appEnv is development or test (DATABASE_ALLOW_PLAINTEXT). */
  allowPlaintext?: boolean | string;
  /** production, development or test (APP_ENV). Anything else counts as production. */
  appEnv?: string;
  /** DNS + TCP + TLS + authentication + TLS assertion (DATABASE_CONNECT_TIMEOUT_MS). Default 5000, or connect_timeout from the URL. */
  connectTimeoutMs?: number | string;
  /** Server-side statement_timeout (DATABASE_STATEMENT_TIMEOUT_MS). Default 30000. */
  statementTimeoutMs?: number | string;
  /** Server-side lock_timeout (DATABASE_LOCK_TIMEOUT_MS). Default 10000. */
  lockTimeoutMs?: number | string;
  /** Server-side idle_in_transaction_session_timeout (DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS). Default 60000. */
  idleInTransactionTimeoutMs?: number | string;
  /**
   * Longest pause of a stream's consumer between two rows (DATABASE_STREAM_IDLE_TIMEOUT_MS). When the
   * loop has not asked for the next row within it, the cursor is closed and the connection freed; the
   * next pull throws StreamIdleTimeoutError. Default: the statement timeout (a pause that long would
   * fail the stream on its next read anyway, since the server's statement_timeout covers the pauses).
   */
  streamIdleTimeoutMs?: number | string;
  /** TCP keepalive idle time; keepalive is always on (DATABASE_KEEPALIVE_IDLE_MS). Default 60000. */
  keepAliveIdleMs?: number | string;
  /** Pool size (DATABASE_POOL_MAX). Default 10. */
  poolMax?: number | string;
  /** Close connections idle this long (DATABASE_POOL_IDLE_TIMEOUT_MS). Default 10000. */
  poolIdleTimeoutMs?: number | string;
  /** Longest wait for a free pooled connection (DATABASE_POOL_ACQUIRE_TIMEOUT_MS). Default 5000. */
  acquireTimeoutMs?: number | string;
  /** Retire connections older than this (DATABASE_POOL_MAX_LIFETIME_S). Default 1800. */
  maxLifetimeSeconds?: number | string;
  /** Longest drain on shutdown before connections are closed hard (DATABASE_SHUTDOWN_TIMEOUT_MS). Default 10000. */
  shutdownTimeoutMs?: number | string;
  /** Attempts after the first at startup, for transient errors only (DATABASE_STARTUP_RETRIES). Default 3. */
  startupRetries?: number | string;
  /** application_name sent to the server (DATABASE_APPLICATION_NAME). Default: derived from the app and the cloud platform. */
  applicationName?: string;
  /**
   * Most rows a buffered query (query, fetch, fetchrow …) may return; more is a ResultTooLargeError,
   * enforced by the server sending no more than that (DATABASE_MAX_ROWS). Default 10000. Per call:
   * `fetch(query, { maxRows })`; for big results use `stream()`.
   */
  maxRows?: number | string;
  /**
   * When every pooled connection is busy, DatabaseService pipelines autocommit statements on the
   * least busy ones instead of queueing them for a free connection (DATABASE_PIPELINING). `reads`
   * (the default): plain reads only (a read failed by a lost connection can be retried without being
   * applied twice); `true`: reads and writes; `false`: never. Off behind a transaction pooler.
   */
  pipelining?: boolean | 'reads' | string;
  /**
   * Prepared statements DatabaseService keeps per connection for its autocommit statements, so each
   * is parsed and planned once per connection (DATABASE_STATEMENT_CACHE_SIZE). 0 turns it off; always
   * off behind a transaction pooler. Default 100.
   */
  statementCacheSize?: number | string;
  /**
   * What sits between the app and PostgreSQL (DATABASE_POOLER): `transaction` (PgBouncer, Supavisor or
   * Neon's pooler in transaction mode), `session`, or `none`. Default: detected from known pooler hosts
   * (Neon's `-pooler.` hosts, Supabase pooler hosts and port 6543), else none.
   */
  pooler?: 'none' | 'transaction' | 'session';
  /**
   * Behind a transaction pooler, a direct URL to the database (DATABASE_DIRECT_URL) for the work that
   * needs a session of its own: withConnection (advisory locks, LISTEN, session SET). Same TLS rules.
   */
  directUrl?: string;
  /**
   * A read replica connection (DATABASE_READ_ONLY): every new connection must reach a server in
   * recovery (a standby) or a read-only session, and is refused otherwise. Default false.
   */
  readOnly?: boolean | string;
  /**
   * libpq's channel_binding (DATABASE_CHANNEL_BINDING), wins over `channel_binding` in the URL:
   * `require` refuses any connection that did not authenticate with SCRAM-SHA-256-PLUS (bound to the
   * TLS channel), `prefer` uses it when the server offers it. Default `disable`, as in node-postgres.
   */
  channelBinding?: 'disable' | 'prefer' | 'require';
  /**
   * How int8 values (bigint columns, count(*), sum of integers) arrive (DATABASE_INT8): `string` as in
   * pg (the default), `number` (a value beyond ±Number.MAX_SAFE_INTEGER is an Int8OutOfRangeError, never
   * rounded) or `bigint`. Arrays of int8 too. Applies to this connection's pools only.
   */
  int8?: 'string' | 'number' | 'bigint';
  /**
   * How numeric (decimal) values arrive (DATABASE_NUMERIC): `string` as in pg (the default, exact) or
   * `number` (parseFloat: rounds to double precision). Arrays too. Applies to this connection's pools only.
   */
  numeric?: 'string' | 'number';
  /**
   * Row keys of the query helpers and streams (DATABASE_ROW_CASE): `none` keeps the column names (the
   * default), `camel` maps them (created_at -> createdAt) once per result, not per row. Two columns
   * mapping to one key is a RowCaseCollisionError. Raw pg use (@InjectPool) is not affected.
   */
  rowCase?: 'none' | 'camel';
  /**
   * Apply the pending migrations of `migrationsDir` at startup (DATABASE_MIGRATIONS_RUN), after the
   * first connection passed its checks and before the app serves: as `npx nestjs-secure-postgres
   * migrate` does (DATABASE_MIGRATION_URL, the owner role, else this connection's URL with a warning;
   * the migration lock, so instances starting together apply each file once). A failed migration
   * fails the startup. Default false: most deployments migrate in a release step of their own.
   */
  migrationsRun?: boolean | string;
  /** The folder of migration files for migrationsRun (DATABASE_MIGRATIONS_DIR); default `migrations`, relative to the working directory. */
  migrationsDir?: string;
  /**
   * Log a warning for each statement that took at least this long (DATABASE_SLOW_QUERY_MS), with its
   * duration, fingerprint and text, never its values (in production the normalised text, literals
   * replaced by `?`, cut to 1000 characters); at most 10 lines a minute. Default: off.
   */
  slowQueryMs?: number | string;
  /**
   * OpenTelemetry metrics (DATABASE_METRICS): on by default, recorded only when the app has a meter
   * provider (the `meterProvider` option, or a global one registered before the module starts);
   * `false` turns them off even then.
   */
  metrics?: boolean | string;
  /** Where the metrics go instead of the global meter provider (an OpenTelemetry MeterProvider). Code only. */
  meterProvider?: { getMeter(name: string, version?: string): unknown };
  /**
   * Called once per statement after it settled, with its connection, text (placeholders only, never
   * values), fingerprint, duration, rows, outcome and how it ran (QueryEvent). Runs on the statement's
   * path: keep it quick. What it throws is logged once and never reaches the caller. Code only.
   */
  onQuery?: QueryEventHook;
}

export interface SecureDatabaseOptionsFactory {
  createSecureDatabaseOptions(): Promise<SecureDatabaseModuleOptions> | SecureDatabaseModuleOptions;
}

/** forRootAsync options, in Nest's ConfigurableModuleBuilder shape. */
export interface SecureDatabaseModuleAsyncOptions extends Pick<ModuleMetadata, 'imports'> {
  name?: string;
  useFactory?: (...args: any[]) => Promise<SecureDatabaseModuleOptions> | SecureDatabaseModuleOptions;
  inject?: Array<InjectionToken | OptionalFactoryDependency>;
  useClass?: Type<SecureDatabaseOptionsFactory>;
  useExisting?: Type<SecureDatabaseOptionsFactory>;
}
