import { Logger } from '@nestjs/common';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { MigrationFilesError, newMigrationName } from './migration-files.js';
import { MigrationError, migrationStatus, runMigrations } from './run-migrations.js';

export const MIGRATE_USAGE = `Usage: nestjs-secure-postgres migrate [up|status|create <name>] [--dir <folder>] [--table <schema.table>]

  migrate            apply the pending .sql files of the folder, in the order of their numeric prefix
  migrate status     list each migration: applied, pending, changed (edited after being applied), file missing
  migrate create N   write <folder>/<UTC timestamp>_N.sql, empty

Connects as DATABASE_MIGRATION_URL (the role that owns the tables; DATABASE_URL with a warning when
unset), with the module's TLS policy and checks: DATABASE_SSL_ROOT_CERT and the other DATABASE_*
variables apply as they do to the app. Each file runs in a transaction with its record in the
migrations table, unless its first line is "-- migrate: no-transaction". An advisory lock makes a
second concurrent run wait, then find nothing to do.

  --dir <folder>     the migrations folder (default migrations)
  --table <name>     the table recording applied migrations (default public.secure_migrations)
  -h, --help         this text

Exit status: 0 done, 1 a migration failed or was edited after being applied, 2 usage or configuration error.
`;

interface CommandIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

interface Parsed {
  action: 'up' | 'status' | 'create' | 'help';
  name?: string;
  dir: string;
  table?: string;
}

function parse(argv: string[]): Parsed | string {
  const parsed: Parsed = { action: 'up', dir: 'migrations' };
  const words: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { ...parsed, action: 'help' };
    if (arg === '--dir' || arg === '--table') {
      const value = argv[++i];
      if (value === undefined) return `${arg} needs a value`;
      if (arg === '--dir') parsed.dir = value;
      else parsed.table = value;
    } else if (/:\/\/|@/.test(arg)) return `argument ${i + 1} looks like a URL: never give the URL as an argument (shell history, process lists); use DATABASE_MIGRATION_URL`;
    else if (arg.startsWith('-')) return `unknown option${/^[\w-]{1,40}$/.test(arg) ? ` ${arg}` : ''}`;
    else words.push(arg);
  }
  const [action = 'up', ...rest] = words;
  if (action === 'create') {
    if (rest.length !== 1) return 'migrate create takes one name (migrate create create_users)';
    return { ...parsed, action, name: rest[0] };
  }
  if (action !== 'up' && action !== 'status') return 'unknown migrate command: up, status or create';
  if (rest.length) return `unexpected argument after ${action}`;
  return { ...parsed, action };
}

/** `migrate`, `migrate status`, `migrate create <name>` (argv after the word migrate): returns the exit status. */
export async function runMigrateCommand(io: CommandIo): Promise<number> {
  const parsed = parse(io.argv);
  if (typeof parsed === 'string') {
    io.stderr.write(`nestjs-secure-postgres migrate: ${parsed}\n\n${MIGRATE_USAGE}`);
    return 2;
  }
  if (parsed.action === 'help') {
    io.stdout.write(MIGRATE_USAGE);
    return 0;
  }
  // The pool's own log lines (Nest's Logger) would interleave with ours; what matters is reported below.
  Logger.overrideLogger(false);
  try {
    if (parsed.action === 'create') {
      const name = newMigrationName(parsed.name!);
      await mkdir(parsed.dir, { recursive: true });
      const path = join(parsed.dir, name);
      if (existsSync(path)) throw new MigrationFilesError(`${path} exists already`);
      await writeFile(path, `-- ${name}: runs once, in a transaction, as the owner role (DATABASE_MIGRATION_URL).\n`, { flag: 'wx' });
      io.stdout.write(`created ${path}\n`);
      return 0;
    }
    const log = (line: string) => (line.startsWith('warning: ') ? io.stderr : io.stdout).write(`${line}\n`);
    if (parsed.action === 'status') {
      const entries = await migrationStatus({ dir: parsed.dir, table: parsed.table, env: io.env, log });
      if (!entries.length) io.stdout.write(`no migrations in ${parsed.dir}\n`);
      for (const e of entries) io.stdout.write(`${e.state.padEnd(12)}  ${e.name}${e.appliedAt ? `  ${e.appliedAt.toISOString()}` : ''}\n`);
      return entries.some((e) => e.state === 'changed') ? 1 : 0;
    }
    await runMigrations({ dir: parsed.dir, table: parsed.table, env: io.env, log });
    return 0;
  } catch (error) {
    if (error instanceof ConfigurationError) {
      io.stderr.write(`nestjs-secure-postgres migrate: configuration error\n${error.problems.map((p) => `  - ${p}`).join('\n')}\n`);
      return 2;
    }
    if (error instanceof MigrationFilesError) {
      io.stderr.write(`nestjs-secure-postgres migrate: ${error.message}\n`);
      return 2;
    }
    if (error instanceof MigrationError) {
      io.stderr.write(`nestjs-secure-postgres migrate: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}
