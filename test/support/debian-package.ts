import { execFile, execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

// One installer at a time across jest workers and parallel runs (apt's own lock would fail the others).
const INSTALL_LOCK = join(tmpdir(), 'secure-pg-apt-install.lock');
const INSTALL_BUDGET_MS = 10 * 60_000;

export interface DebianTool<T> {
  /** What the spec needs, for messages: "pgbouncer", "pg_auto_failover". */
  name: string;
  /** The Debian packages that provide it. */
  packages: string[];
  /** Finds it on disk; undefined when it is not installed. */
  find(): T | undefined;
  /** What to do on a machine where it cannot be installed here: the end of the error message. */
  howToInstall: string;
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

async function aptInstall(packages: string[]): Promise<void> {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  // The package lists of a fresh image are often empty or stale.
  await run('apt-get', ['update', '-qq'], { env, maxBuffer: 64 * 1024 * 1024 });
  await run('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...packages], { env, maxBuffer: 64 * 1024 * 1024 });
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
    const age = Date.now() - (statSync(INSTALL_LOCK, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > INSTALL_BUDGET_MS) await unlink(INSTALL_LOCK).catch(() => undefined);
    return undefined;
  }
}

/**
 * A tool a spec needs from the system: found on disk, or, where we are root with apt-get (CI, the
 * test image), its Debian packages installed once however many jest workers ask at the same time;
 * elsewhere a failure saying what to install. Never a silent skip.
 */
export async function debianTool<T>(tool: DebianTool<T>): Promise<T> {
  const deadline = Date.now() + INSTALL_BUDGET_MS;
  for (;;) {
    const existing = tool.find();
    if (existing) return existing;
    if (!canInstallWithApt()) {
      throw new Error(`${tool.name} is not installed and cannot be installed here (needs root and apt-get): ${tool.howToInstall}`);
    }
    const lock = await tryLock();
    if (lock) {
      try {
        if (!tool.find()) await aptInstall(tool.packages);
      } finally {
        await lock.release();
      }
      const installed = tool.find();
      if (!installed) throw new Error(`apt-get install ${tool.packages.join(' ')} succeeded but ${tool.name} was not found`);
      return installed;
    }
    if (Date.now() > deadline) throw new Error(`${tool.name}: another process held ${INSTALL_LOCK} for too long`);
    await sleep(500);
  }
}
