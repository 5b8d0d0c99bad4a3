import Joi from 'joi';
import { CHANNEL_BINDING_MODES, type ChannelBindingMode } from '../auth/channel-binding.js';
import type { PasswordProvider } from '../credentials/password-source.js';
import type { MinimumSslMode, SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { POOLER_MODES, type PoolerMode } from '../pooler/pooler-mode.js';
import { ROW_CASES, type RowCase } from './row-case.js';
import { INT8_MODES, type Int8Mode, NUMERIC_MODES, type NumericMode } from './type-parsers.js';

/** Each option's environment variable: the public contract of `databaseConfig`. */
export const DATABASE_ENV_NAMES = {
  url: 'DATABASE_URL',
  urlFile: 'DATABASE_URL_FILE',
  password: 'DATABASE_PASSWORD',
  passwordFile: 'DATABASE_PASSWORD_FILE',
  sslRootCert: 'DATABASE_SSL_ROOT_CERT',
  sslCert: 'DATABASE_SSL_CERT',
  sslKey: 'DATABASE_SSL_KEY',
  sslKeyPassphrase: 'DATABASE_SSL_KEY_PASSPHRASE',
  sslMinMode: 'DATABASE_SSL_MIN_MODE',
  allowPlaintext: 'DATABASE_ALLOW_PLAINTEXT',
  appEnv: 'APP_ENV',
  connectTimeoutMs: 'DATABASE_CONNECT_TIMEOUT_MS',
  statementTimeoutMs: 'DATABASE_STATEMENT_TIMEOUT_MS',
  lockTimeoutMs: 'DATABASE_LOCK_TIMEOUT_MS',
  idleInTransactionTimeoutMs: 'DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS',
  streamIdleTimeoutMs: 'DATABASE_STREAM_IDLE_TIMEOUT_MS',
  keepAliveIdleMs: 'DATABASE_KEEPALIVE_IDLE_MS',
  poolMax: 'DATABASE_POOL_MAX',
  poolIdleTimeoutMs: 'DATABASE_POOL_IDLE_TIMEOUT_MS',
  acquireTimeoutMs: 'DATABASE_POOL_ACQUIRE_TIMEOUT_MS',
  maxLifetimeSeconds: 'DATABASE_POOL_MAX_LIFETIME_S',
  shutdownTimeoutMs: 'DATABASE_SHUTDOWN_TIMEOUT_MS',
  startupRetries: 'DATABASE_STARTUP_RETRIES',
  applicationName: 'DATABASE_APPLICATION_NAME',
  maxRows: 'DATABASE_MAX_ROWS',
  pipelining: 'DATABASE_PIPELINING',
  statementCacheSize: 'DATABASE_STATEMENT_CACHE_SIZE',
  pooler: 'DATABASE_POOLER',
  directUrl: 'DATABASE_DIRECT_URL',
  readOnly: 'DATABASE_READ_ONLY',
  channelBinding: 'DATABASE_CHANNEL_BINDING',
  int8: 'DATABASE_INT8',
  numeric: 'DATABASE_NUMERIC',
  rowCase: 'DATABASE_ROW_CASE',
  migrationsRun: 'DATABASE_MIGRATIONS_RUN',
  migrationsDir: 'DATABASE_MIGRATIONS_DIR',
  slowQueryMs: 'DATABASE_SLOW_QUERY_MS',
  metrics: 'DATABASE_METRICS',
} as const satisfies Record<Exclude<keyof SecureDatabaseModuleOptions, 'name' | CodeOnlyOption>, string>;

/** Options that only code can pass (functions and objects): they have no environment variable. */
type CodeOnlyOption = 'meterProvider' | 'onQuery';

/**
 * Which autocommit statements of DatabaseService may share a busy connection (DATABASE_PIPELINING):
 * `reads` (the default) plain reads only, `true` plain reads and writes, `false` none.
 */
export type PipeliningMode = 'reads' | boolean;

export const DATABASE_DEFAULTS = {
  connectTimeoutMs: 5_000,
  statementTimeoutMs: 30_000,
  lockTimeoutMs: 10_000,
  idleInTransactionTimeoutMs: 60_000,
  keepAliveIdleMs: 60_000,
  poolMax: 10,
  poolIdleTimeoutMs: 10_000,
  acquireTimeoutMs: 5_000,
  maxLifetimeSeconds: 1_800,
  shutdownTimeoutMs: 10_000,
  startupRetries: 3,
  maxRows: 10_000,
  pipelining: 'reads' as PipeliningMode,
  statementCacheSize: 100,
  sslMinMode: 'require' as MinimumSslMode,
  int8: 'string' as Int8Mode,
  numeric: 'string' as NumericMode,
  rowCase: 'none' as RowCase,
  migrationsDir: 'migrations',
};

/** Options after validation: numbers are numbers, defaults applied (connectTimeoutMs may come from the URL). */
export interface ValidatedOptions {
  name?: string;
  url?: string;
  urlFile?: string;
  password?: string | PasswordProvider;
  passwordFile?: string;
  sslRootCert?: string;
  sslCert?: string;
  sslKey?: string;
  sslKeyPassphrase?: string;
  sslMinMode: MinimumSslMode;
  allowPlaintext: boolean;
  appEnv?: string;
  connectTimeoutMs?: number;
  statementTimeoutMs: number;
  lockTimeoutMs: number;
  idleInTransactionTimeoutMs: number;
  /** Unset: the statement timeout. */
  streamIdleTimeoutMs?: number;
  keepAliveIdleMs: number;
  poolMax: number;
  poolIdleTimeoutMs: number;
  acquireTimeoutMs: number;
  maxLifetimeSeconds: number;
  shutdownTimeoutMs: number;
  startupRetries: number;
  applicationName?: string;
  maxRows: number;
  pipelining: PipeliningMode;
  statementCacheSize: number;
  pooler?: PoolerMode;
  directUrl?: string;
  readOnly: boolean;
  channelBinding?: ChannelBindingMode;
  int8: Int8Mode;
  numeric: NumericMode;
  rowCase: RowCase;
  migrationsRun: boolean;
  migrationsDir: string;
  slowQueryMs?: number;
  metrics: boolean;
  meterProvider?: SecureDatabaseModuleOptions['meterProvider'];
  onQuery?: SecureDatabaseModuleOptions['onQuery'];
}

const label = (key: keyof typeof DATABASE_ENV_NAMES) => `${DATABASE_ENV_NAMES[key]} (${key})`;

// setTimeout's ceiling; larger values fire immediately.
const MAX_TIMER_MS = 2_147_483_647;

const whole = (key: keyof typeof DATABASE_ENV_NAMES, min: number, max: number, unit: string) =>
  Joi.number()
    .integer()
    .min(min)
    .max(max)
    .label(label(key))
    .messages({
      'number.base': `{{#label}} must be a whole number of ${unit}`,
      'number.integer': `{{#label}} must be a whole number of ${unit}`,
      'number.min': `{{#label}} must be at least {{#limit}} ${unit} (zero or negative would disable it)`,
      'number.max': `{{#label}} must be at most {{#limit}} ${unit}`,
      'number.infinity': `{{#label}} must be a whole number of ${unit}`,
      'number.unsafe': `{{#label}} must be at most ${MAX_TIMER_MS} ${unit}`,
    });

const ms = (key: keyof typeof DATABASE_ENV_NAMES) => whole(key, 1, MAX_TIMER_MS, 'milliseconds');

export const secureDatabaseOptionsSchema = Joi.object<ValidatedOptions>({
  name: Joi.string()
    .pattern(/^[A-Za-z][A-Za-z0-9_-]{0,62}$/)
    .label('name')
    .messages({ 'string.pattern.base': '{{#label}} must start with a letter and use only letters, digits, _ and -' }),
  url: Joi.string().label(label('url')),
  urlFile: Joi.string().label(label('urlFile')),
  password: Joi.alternatives(Joi.string(), Joi.function()).label(label('password')).messages({ 'alternatives.types': '{{#label}} must be a string or a function' }),
  passwordFile: Joi.string().label(label('passwordFile')),
  sslRootCert: Joi.string().label(label('sslRootCert')),
  sslCert: Joi.string().label(label('sslCert')),
  sslKey: Joi.string().label(label('sslKey')),
  sslKeyPassphrase: Joi.string().label(label('sslKeyPassphrase')),
  sslMinMode: Joi.string()
    .valid('require', 'verify-ca', 'verify-full')
    .default(DATABASE_DEFAULTS.sslMinMode)
    .label(label('sslMinMode')),
  allowPlaintext: Joi.boolean().truthy('1', 'yes').falsy('0', 'no').default(false).label(label('allowPlaintext')),
  appEnv: Joi.string().label(label('appEnv')),
  connectTimeoutMs: ms('connectTimeoutMs'),
  statementTimeoutMs: ms('statementTimeoutMs').default(DATABASE_DEFAULTS.statementTimeoutMs),
  lockTimeoutMs: ms('lockTimeoutMs').default(DATABASE_DEFAULTS.lockTimeoutMs),
  idleInTransactionTimeoutMs: ms('idleInTransactionTimeoutMs').default(DATABASE_DEFAULTS.idleInTransactionTimeoutMs),
  // No default of its own: it follows statementTimeoutMs (resolve-database-config.ts).
  streamIdleTimeoutMs: ms('streamIdleTimeoutMs'),
  keepAliveIdleMs: whole('keepAliveIdleMs', 1000, MAX_TIMER_MS, 'milliseconds').default(DATABASE_DEFAULTS.keepAliveIdleMs),
  poolMax: whole('poolMax', 1, 10_000, 'connections').default(DATABASE_DEFAULTS.poolMax),
  poolIdleTimeoutMs: ms('poolIdleTimeoutMs').default(DATABASE_DEFAULTS.poolIdleTimeoutMs),
  acquireTimeoutMs: ms('acquireTimeoutMs').default(DATABASE_DEFAULTS.acquireTimeoutMs),
  maxLifetimeSeconds: whole('maxLifetimeSeconds', 1, 2_147_483, 'seconds').default(DATABASE_DEFAULTS.maxLifetimeSeconds),
  shutdownTimeoutMs: ms('shutdownTimeoutMs').default(DATABASE_DEFAULTS.shutdownTimeoutMs),
  startupRetries: whole('startupRetries', 0, 20, 'attempts')
    .messages({ 'number.min': '{{#label}} must be 0 or more' })
    .default(DATABASE_DEFAULTS.startupRetries),
  applicationName: Joi.string().max(63).label(label('applicationName')),
  maxRows: whole('maxRows', 1, 100_000_000, 'rows').default(DATABASE_DEFAULTS.maxRows),
  statementCacheSize: whole('statementCacheSize', 0, 10_000, 'statements')
    .messages({ 'number.min': '{{#label}} must be 0 (off) or more' })
    .default(DATABASE_DEFAULTS.statementCacheSize),
  pipelining: Joi.alternatives()
    .try(Joi.boolean().truthy('1', 'yes', 'on').falsy('0', 'no', 'off'), Joi.string().valid('reads'))
    .messages({
      'alternatives.match': '{{#label}} must be reads (the default), true (reads and writes) or false',
      'alternatives.types': '{{#label}} must be reads (the default), true (reads and writes) or false',
    })
    .default(DATABASE_DEFAULTS.pipelining)
    .label(label('pipelining')),
  pooler: Joi.string().valid(...POOLER_MODES).label(label('pooler')),
  directUrl: Joi.string().label(label('directUrl')),
  readOnly: Joi.boolean().truthy('1', 'yes').falsy('0', 'no').default(false).label(label('readOnly')),
  channelBinding: Joi.string().valid(...CHANNEL_BINDING_MODES).label(label('channelBinding')),
  int8: Joi.string()
    .valid(...INT8_MODES)
    .default(DATABASE_DEFAULTS.int8)
    .label(label('int8')),
  numeric: Joi.string()
    .valid(...NUMERIC_MODES)
    .default(DATABASE_DEFAULTS.numeric)
    .label(label('numeric')),
  rowCase: Joi.string()
    .valid(...ROW_CASES)
    .default(DATABASE_DEFAULTS.rowCase)
    .label(label('rowCase')),
  migrationsRun: Joi.boolean().truthy('1', 'yes', 'on').falsy('0', 'no', 'off').default(false).label(label('migrationsRun')),
  migrationsDir: Joi.string().default(DATABASE_DEFAULTS.migrationsDir).label(label('migrationsDir')),
  slowQueryMs: whole('slowQueryMs', 1, MAX_TIMER_MS, 'milliseconds'),
  metrics: Joi.boolean().truthy('1', 'yes', 'on').falsy('0', 'no', 'off').default(true).label(label('metrics')),
  // Checked, never cloned: the SDK's MeterProvider is a class instance.
  meterProvider: Joi.any()
    .custom((value: unknown) => {
      if (typeof (value as { getMeter?: unknown } | null)?.getMeter !== 'function') throw new Error('not a MeterProvider');
      return value;
    })
    .label('meterProvider')
    .messages({ 'any.custom': '{{#label}} must be an OpenTelemetry MeterProvider (an object with getMeter)' }),
  onQuery: Joi.function().label('onQuery').messages({ 'function.base': '{{#label}} must be a function (event) => void' }),
})
  .or('url', 'urlFile')
  .oxor('url', 'urlFile')
  .messages({
    'object.missing':
      'DATABASE_URL environment variable must be set: store the connection URL as a secret in your platform ' +
      '(Railway/Render/Fly variables, HuggingFace Space secrets) or point DATABASE_URL_FILE at a mounted secret file',
    'object.oxor': 'set only one of DATABASE_URL and DATABASE_URL_FILE',
    'object.unknown': '{{#label}} is not a SecureDatabaseModule option',
  });

/**
 * Validates options from code or from the environment. Messages name keys and limits, never the
 * offending values (which may be secrets). Offending keys fall back to their defaults in `value`,
 * so later checks (URL, TLS) can still run and every problem is reported at once.
 */
export function validateSecureDatabaseOptions(input: SecureDatabaseModuleOptions): { value: ValidatedOptions; problems: string[] } {
  const validate = (options: object) =>
    secureDatabaseOptionsSchema.validate(options, { abortEarly: false, errors: { wrap: { label: false } } });
  const first = validate(input ?? {});
  if (!first.error) return { value: first.value, problems: [] };
  const problems = first.error.details.map((d) => d.message);
  const rest: Record<string, unknown> = { ...input };
  for (const detail of first.error.details) if (detail.path.length) delete rest[String(detail.path[0])];
  return { value: validate(rest).value, problems };
}
