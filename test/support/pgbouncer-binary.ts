import { execFile, execFileSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

// Where Debian/Ubuntu (/usr/sbin), Homebrew and source builds put it, besides PATH.
const FIXED_CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/opt/homebrew/bin/pgbouncer'];
// One installer at a time across jest workers and parallel runs; the others wait for it.
const INSTALL_LOCK = join(tmpdir(), 'secure-pg-pgbouncer-install.lock');
const INSTALL_BUDGET_MS = 10 * 60_000;

function findOnDisk(): string | undefined {
  if (process.env.PGBOUNCER_BIN) return process.env.PGBOUNCER_BIN;
  const onPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'pgbouncer'));
  return [...onPath, ...FIXED_CANDIDATES].find((file) => existsSync(file));
}

function canInstallWithApt(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('apt-get', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

async function aptInstall(): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // The package lists of a fresh image are often empty or stale.
  await run('apt-get', ['update', '-qq'], { env, maxBuffer: 64 * 1024 * 1024 });
  await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'pgbouncer'], { env, maxBuffer: 64 * 1024 * 1024 });
}

/** Takes the install lock, or undefined when someone else holds it (a lock older than the budget is stale). */
async function tryLock(): Promise<{ release(): Promise<void> } | undefined> {
  try {
    const handle = await open(INSTALL_LOCK, 'wx');
    await handle.writeFile(String(process.pid));
    await handle.close();
    return { release: () => unlink(INSTALL_LOCK).catch(() => undefined) };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const age = Date.now() - statSync(INSTALL_LOCK, { throwIfNoEntry: false })!.mtimeMs;
    if (age > INSTALL_BUDGET_MS) await unlink(INSTALL_LOCK).catch(() => undefined);
    return undefined;
  }
}

let found: Promise<string> | undefined;

/**
 * The pgbouncer executable: PGBOUNCER_BIN, PATH, or the usual install locations. On a fresh machine
 * where we are root with apt-get (CI, the test image), installs the Debian package once, however
 * many jest workers ask at the same time; otherwise fails with what to install.
 */
export function pgbouncerBinary(): Promise<string> {
  return (found ??= locate().catch((error: unknown) => {
    found = undefined;
    throw error;
  }));
}

async function locate(): Promise<string> {
  const deadline = Date.now() + INSTALL_BUDGET_MS;
  for (;;) {
    const existing = findOnDisk();
    if (existing) return existing;
    if (!canInstallWithApt()) {
      throw new Error(
        'pgbouncer is not installed and cannot be installed here (needs root and apt-get): install it ' +
          '(Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer) or set PGBOUNCER_BIN',
      );
    }
    const lock = await tryLock();
    if (lock) {
      try {
        if (!findOnDisk()) await aptInstall();
      } finally {
        await lock.release();
      }
      const installed = findOnDisk();
      if (!installed) throw new Error('apt-get install pgbouncer succeeded but no pgbouncer executable was found');
      return installed;
    }
    if (Date.now() > deadline) throw new Error(`pgbouncer: another process held ${INSTALL_LOCK} for too long`);
    await sleep(500);
  }
}
