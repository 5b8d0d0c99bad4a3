import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { debianTool } from './debian-package.js';

// Where Debian/Ubuntu (/usr/sbin), Homebrew and source builds put it, besides PATH.
const FIXED_CANDIDATES = ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer', '/usr/local/bin/pgbouncer', '/opt/homebrew/bin/pgbouncer'];

function findOnDisk(): string | undefined {
  if (process.env.PGBOUNCER_BIN) return process.env.PGBOUNCER_BIN;
  const onPath = (process.env.PATH ?? '').split(delimiter).filter(Boolean).map((dir) => join(dir, 'pgbouncer'));
  return [...onPath, ...FIXED_CANDIDATES].find((file) => existsSync(file));
}

let found: Promise<string> | undefined;

/**
 * The pgbouncer executable: PGBOUNCER_BIN, PATH, or the usual install locations. On a fresh machine
 * where we are root with apt-get (CI, the test image), installs the Debian package once, however
 * many jest workers ask at the same time; otherwise fails with what to install.
 */
export function pgbouncerBinary(): Promise<string> {
  return (found ??= debianTool({
    name: 'pgbouncer',
    packages: ['pgbouncer'],
    find: findOnDisk,
    howToInstall: 'install it (Debian/Ubuntu: apt-get install pgbouncer; macOS: brew install pgbouncer) or set PGBOUNCER_BIN',
  }).catch((error: unknown) => {
    found = undefined;
    throw error;
  }));
}
