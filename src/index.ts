export { SecureDatabaseModule } from './secure-database/secure-database.module.js';
export type {
  SecureDatabaseModuleOptions,
  SecureDatabaseModuleAsyncOptions,
  SecureDatabaseOptionsFactory,
  SslMode,
  MinimumSslMode,
  AppEnv,
} from './secure-database/interfaces/secure-database-options.interface.js';
export { databaseConfig, readDatabaseEnv, readReplicaEnv, replicaDatabaseConfig } from './secure-database/config/database.config.js';
export { DATABASE_ENV_NAMES, DATABASE_DEFAULTS } from './secure-database/config/secure-database-options.schema.js';
export { resolveDatabaseConfig, type ResolvedDatabaseConfig } from './secure-database/config/resolve-database-config.js';
export { redactUrl } from './secure-database/config/database-url.js';
export { InjectPool, InjectDatabase } from './secure-database/secure-database.decorators.js';
export { SecureDatabaseLogger, runBootstrap } from './secure-database/bootstrap.js';
export { RequestSignal, requestSignalOf } from './secure-database/http/request-signal.js';
export { getPoolToken, getDatabaseServiceToken } from './secure-database/secure-database.utils.js';
export { DatabaseService } from './secure-database/service/database.service.js';
export type { DatabasePoolStats } from './secure-database/pool/database-pool.js';
export type { QueryEvent, QueryEventHook } from './secure-database/observability/query-event.js';
export { statementShape, type StatementShape } from './secure-database/observability/statement-fingerprint.js';
export { SLOW_QUERY_LINES_PER_WINDOW, SLOW_QUERY_TEXT_LIMIT, SLOW_QUERY_WINDOW_MS } from './secure-database/observability/slow-query-log.js';
export type { ConnectionTlsFacts } from './secure-database/tls/tls-assertion.js';
export * from './secure-database/errors/index.js';
export { ChannelBindingError } from './secure-database/auth/channel-binding.js';
export { CredentialProviderError } from './secure-database/credentials/connection-credentials.js';
export type { PasswordProvider, PasswordProviderTarget } from './secure-database/credentials/password-source.js';
export { sql, type SqlFragment } from './secure-database/service/sql.js';
export type { Queryable, QueryInput, QueryOptions, QueryResult, Row, StreamOptions } from './secure-database/service/queryable.js';
export type { RowOptions, SchemaOutput } from './secure-database/service/row-schema.js';
export type { CallOptions } from './secure-database/service/cancellation.js';
export type { DatabaseSettings, SettingValue } from './secure-database/settings/database-settings.js';
export type { ScopedConnection } from './secure-database/service/scoped-connection.js';
export { DEFAULT_TRANSACTION_RETRIES, type TransactionOptions, type IsolationLevel } from './secure-database/service/transaction-options.js';
export { Transactional, type TransactionalOptions } from './secure-database/service/transactional.js';
export { DatabaseHealthIndicator, type DatabasePingOptions } from './secure-database/health/database.health.js';
export { ListenerHealthIndicator, type ListenerCheckOptions } from './secure-database/health/listener.health.js';
export type { ListenerStats } from './secure-database/pool/database-pool.js';
export type { Notification, NotificationHandler, ListenOptions, ListenerReconnected, Subscription } from './secure-database/listen/notification-listener.js';
export type { CopyRows, CopyFromOptions } from './secure-database/copy/copy-from.js';
export type { CopyTable } from './secure-database/copy/copy-statement.js';
export type { CopyRow, CopyToOptions } from './secure-database/copy/copy-to.js';
export {
  DATABASE_EXCEPTION_FILTER_OPTIONS,
  DatabaseExceptionFilter,
  type DatabaseErrorBody,
  type DatabaseErrorReplyContext,
  type DatabaseExceptionFilterOptions,
} from './secure-database/filter/database-exception.filter.js';
export { databaseErrorStatus, type DatabaseErrorResponse } from './secure-database/filter/database-error-status.js';
export {
  runMigrations,
  migrationStatus,
  MigrationError,
  type RunMigrationsOptions,
  type MigrationStatusEntry,
} from './secure-database/migrate/run-migrations.js';
