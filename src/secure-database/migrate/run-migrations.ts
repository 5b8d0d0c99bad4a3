import { createHash } from 'node:crypto';
import type pg from 'pg';
import { readDatabaseEnv } from '../config/database.config.js';
import { resolveDatabaseConfig } from '../config/resolve-database-config.js';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import type { SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { DatabasePool } from '../pool/database-pool.js';
import { type MigrationFile, lineOf, readMigrationFiles } from './migration-files.js';

export interface RunMigrationsOptions {
  /** The folder of `.sql` files (default `migrations`, relative to the working directory). */
  dir?: string;
  /** The owner role's URL; default DATABASE_MIGRATION_URL, else DATABASE_URL (with a warning). */
  url?: string;
  /** Every other setting (CA, client certificate, timeouts …); default the DATABASE_* variables of `env`. */
  database?: SecureDatabaseModuleOptions;
  env?: NodeJS.ProcessEnv;
  /** `schema.table` or `table` (in public) recording what was applied; default `public.secure_migrations`. */
  table?: string;
  /** How long to wait for another deployment's run to finish (default 10 minutes). */
  lockWaitMs?: number;
  /** Progress lines (applied …, waiting …, warnings); default none. Never carries SQL, passwords or URLs. */
  log?: (line: string) => void;
}

export interface MigrationStatusEntry {
  name: string;
  state: 'applied' | 'pending' | 'changed' | 'file missing';
  appliedAt?: Date;
}

/** A migration run that stopped: `file` names the migration, `sqlstate` the server's code. The message has no SQL. */
export class MigrationError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly sqlstate?: string,
  ) {
    super(message);
    this.name = 'MigrationError';
  }
}

/**
 * The advisory lock every run holds on its one connection from before it reads the table until it
 * is done: two deployments starting together cannot both apply a file. A session lock (not
 * pg_advisory_xact_lock) because no-transaction files run between transactions.
 */
export const MIGRATION_LOCK_KEY = createHash('sha256').update('nestjs-secure-postgres migrate').digest().readBigInt64BE(0);

const DEFAULT_LOCK_WAIT_MS = 10 * 60_000;

/** Resolves the module options for the owner role: DATABASE_MIGRATION_URL as the URL, everything else as the app's. */
export function migrationDatabaseOptions(options: Pick<RunMigrationsOptions, 'url' | 'database' | 'env'>, warn: (line: string) => void): { options: SecureDatabaseModuleOptions; urlName: string } {
  const env = options.env ?? process.env;
  const url = options.url ?? (env.DATABASE_MIGRATION_URL?.trim() || undefined);
  const fromEnv = readDatabaseEnv(env);
  if (url) {
    // DATABASE_PASSWORD(_FILE) is the app role's and would win over the owner's password in the migration URL.
    delete fromEnv.password;
    delete fromEnv.passwordFile;
  }
  const base: SecureDatabaseModuleOptions = { ...fromEnv, ...options.database };
  // One connection is all a run uses.
  const shared = { ...base, poolMax: 1 };
  if (url) {
    const { urlFile: _file, ...rest } = shared;
    return { options: { ...rest, url }, urlName: options.url ? 'the url option' : 'DATABASE_MIGRATION_URL' };
  }
  warn(
    'DATABASE_MIGRATION_URL is not set: migrating as the DATABASE_URL role. The app role should not own the tables (it could then drop them): ' +
      'set DATABASE_MIGRATION_URL to the owner role and give the app role DML only (README, "Your first app")',
  );
  return { options: shared, urlName: 'DATABASE_URL' };
}

function qualifiedTable(table: string, client: pg.ClientBase): string {
  const parts = table.split('.');
  if (parts.length > 2 || parts.some((p) => !/^[A-Za-z_][\w$]*$/.test(p))) throw new MigrationError(`the migrations table must be table or schema.table (letters, digits, _)`);
  return (parts.length === 1 ? ['public', ...parts] : parts).map((p) => client.escapeIdentifier(p)).join('.');
}

/** The server's SQLSTATE and, in development/test only (the module's own verbosity rule), its message. */
function serverError(error: unknown, verbose: boolean, sql?: string): { sqlstate?: string; text: string } {
  if (error instanceof SecureDatabaseError) return { sqlstate: error.sqlstate, text: `${error.code}${error.sqlstate ? ` (SQLSTATE ${error.sqlstate})` : ''}` };
  const e = error as { code?: unknown; message?: unknown; position?: unknown };
  const sqlstate = typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code) ? e.code : undefined;
  const position = Number(e.position);
  const line = sql && Number.isInteger(position) && position > 0 ? ` at line ${lineOf(sql, position)}` : '';
  const detail = verbose && typeof e.message === 'string' ? `: ${e.message}` : '';
  return { sqlstate, text: `${sqlstate ? `SQLSTATE ${sqlstate}` : typeof e.code === 'string' ? e.code : 'error'}${line}${detail}` };
}

async function withMigrationPool<T>(options: RunMigrationsOptions, fn: (db: DatabasePool, client: pg.PoolClient) => Promise<T>): Promise<T> {
  const log = options.log ?? (() => undefined);
  const { options: moduleOptions, urlName } = migrationDatabaseOptions(options, (line) => log(`warning: ${line}`));
  let config;
  try {
    config = resolveDatabaseConfig(moduleOptions, options.env ?? process.env);
  } catch (error) {
    if (error instanceof ConfigurationError && urlName !== 'DATABASE_URL') {
      throw new ConfigurationError(error.problems.map((p) => p.replace(/DATABASE_URL\b/g, urlName)));
    }
    throw error;
  }
  // The session lock and no-transaction files need a server connection of their own for the whole run.
  if (config.pooler.mode === 'transaction') {
    throw new ConfigurationError([`${urlName} goes through a transaction pooler: migrations need a direct connection to the server (its own host and port)`]);
  }
  // The module's warnings name DATABASE_URL: here they are about the migration URL.
  for (const warning of config.warnings) log(`warning: ${urlName === 'DATABASE_URL' ? warning : warning.replace(/DATABASE_URL\b/g, urlName)}`);
  const db = new DatabasePool(config);
  try {
    return await db.withClient((client) => fn(db, client));
  } catch (error) {
    if (error instanceof MigrationError || error instanceof ConfigurationError) throw error;
    throw new MigrationError(`migrate could not run: ${serverError(error, config.verboseErrors).text}`, undefined, serverError(error, false).sqlstate);
  } finally {
    await db.close();
  }
}

interface AppliedRow {
  name: string;
  checksum: string;
  applied_at: Date;
}

async function appliedRows(client: pg.ClientBase, table: string): Promise<AppliedRow[]> {
  const { rows } = await client.query<{ exists: boolean }>('SELECT pg_catalog.to_regclass($1) IS NOT NULL AS exists', [table]);
  if (!rows[0].exists) return [];
  return (await client.query<AppliedRow>(`SELECT name, checksum, applied_at FROM ${table} ORDER BY applied_at, name`)).rows;
}

function statusOf(files: MigrationFile[], applied: AppliedRow[]): MigrationStatusEntry[] {
  const byName = new Map(applied.map((row) => [row.name, row]));
  const onDisk = new Set(files.map((f) => f.name));
  return [
    ...applied.filter((row) => !onDisk.has(row.name)).map((row) => ({ name: row.name, state: 'file missing' as const, appliedAt: row.applied_at })),
    ...files.map((file): MigrationStatusEntry => {
      const row = byName.get(file.name);
      if (!row) return { name: file.name, state: 'pending' };
      return { name: file.name, state: row.checksum === file.checksum ? 'applied' : 'changed', appliedAt: row.applied_at };
    }),
  ];
}

/** What is applied, pending, or changed since it was applied; takes no lock and creates nothing. */
export async function migrationStatus(options: RunMigrationsOptions = {}): Promise<MigrationStatusEntry[]> {
  const files = await readMigrationFiles(options.dir ?? 'migrations');
  return withMigrationPool(options, async (_db, client) => statusOf(files, await appliedRows(client, qualifiedTable(options.table ?? 'secure_migrations', client))));
}

/**
 * Applies the pending `.sql` files of `dir` in order over the owner role's connection, made exactly
 * as the module makes its own (TLS policy, TLS assertion). Each file and its record commit together
 * unless its first line is `-- migrate: no-transaction`. Refuses to run when an applied file was
 * edited. Throws MigrationError naming the file and the SQLSTATE when a file fails (that file rolled
 * back, the later ones not run). Returns the names applied.
 */
export async function runMigrations(options: RunMigrationsOptions = {}): Promise<{ applied: string[] }> {
  const log = options.log ?? (() => undefined);
  const files = await readMigrationFiles(options.dir ?? 'migrations');
  const lockWaitMs = options.lockWaitMs ?? DEFAULT_LOCK_WAIT_MS;
  return withMigrationPool(options, async (db, client) => {
    const table = qualifiedTable(options.table ?? 'secure_migrations', client);
    const key = MIGRATION_LOCK_KEY.toString();
    const { rows } = await client.query<{ locked: boolean }>('SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int8) AS locked', [key]);
    if (!rows[0].locked) {
      log(`another migrate run holds the migration lock: waiting for it (up to ${Math.round(lockWaitMs / 1000)} s)`);
      // The module's statement and lock timeouts (seconds) would end this wait early: it gets its own bound.
      await client.query(`SET statement_timeout = ${lockWaitMs}; SET lock_timeout = ${lockWaitMs}`);
      try {
        await client.query({ text: 'SELECT pg_catalog.pg_advisory_lock($1::pg_catalog.int8)', values: [key], query_timeout: lockWaitMs + 5_000 } as pg.QueryConfig);
      } catch (error) {
        if ((error as { code?: unknown }).code === '55P03' || (error as { code?: unknown }).code === '57014') {
          throw new MigrationError(`another migrate run held the migration lock for more than ${Math.round(lockWaitMs / 1000)} s: gave up`);
        }
        throw error;
      }
      await client.query('RESET statement_timeout; RESET lock_timeout');
    }
    try {
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${table} (name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT pg_catalog.now(), duration_ms integer NOT NULL)`,
      );
      const status = statusOf(files, await appliedRows(client, table));
      const changed = status.filter((s) => s.state === 'changed').map((s) => s.name);
      if (changed.length) {
        throw new MigrationError(
          `${changed.join(', ')} ${changed.length === 1 ? 'was' : 'were'} changed after being applied (sha256 differs from the one recorded): ` +
            'restore the applied version and put the change in a new migration',
          changed[0],
        );
      }
      for (const missing of status.filter((s) => s.state === 'file missing')) log(`warning: ${missing.name} was applied but is not in the folder`);
      const pending = files.filter((f) => status.some((s) => s.name === f.name && s.state === 'pending'));
      const latestApplied = files.filter((f) => status.some((s) => s.name === f.name && s.state === 'applied')).at(-1);
      const applied: string[] = [];
      for (const file of pending) {
        if (latestApplied && file.version < latestApplied.version) log(`warning: ${file.name} is older than ${latestApplied.name}, already applied: applying it now`);
        const started = performance.now();
        await applyFile(client, db, table, file, () => Math.round(performance.now() - started));
        applied.push(file.name);
        log(`applied ${file.name}${file.transaction ? '' : ' (no transaction)'} in ${Math.round(performance.now() - started)} ms`);
      }
      log(applied.length ? `${applied.length} migration(s) applied` : 'nothing to apply: the database is up to date');
      return { applied };
    } finally {
      await client.query('SELECT pg_catalog.pg_advisory_unlock($1::pg_catalog.int8)', [key]).catch(() => db.markUnusable(client));
    }
  });
}

async function applyFile(client: pg.PoolClient, db: DatabasePool, table: string, file: MigrationFile, elapsed: () => number): Promise<void> {
  const record = () => client.query(`INSERT INTO ${table} (name, checksum, duration_ms) VALUES ($1, $2, $3)`, [file.name, file.checksum, elapsed()]);
  const fail = (error: unknown, note: string): never => {
    const { sqlstate, text } = serverError(error, db.config.verboseErrors, file.sql);
    throw new MigrationError(`${file.name} failed: ${text}; ${note}`, file.name, sqlstate);
  };
  if (!file.transaction) {
    // PostgreSQL runs a multi-statement query string as one implicit transaction: such a file holds one statement.
    await client.query(file.sql).catch((error: unknown) => fail(error, 'not recorded, later migrations not run (a failed CREATE INDEX CONCURRENTLY leaves an INVALID index to drop)'));
    await record();
    return;
  }
  await client.query('BEGIN');
  try {
    // The whole file as one simple-protocol query: multi-statement files run as written, in this transaction.
    await client.query(file.sql);
    if (client.getTransactionStatus() !== 'T') {
      throw new MigrationError(`${file.name} ends the transaction itself (COMMIT/ROLLBACK): remove it, or start the file with -- migrate: no-transaction`, file.name);
    }
    await record();
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => db.markUnusable(client));
    if (error instanceof MigrationError) throw error;
    fail(error, 'rolled back, later migrations not run');
  }
}
