import { createHash } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';

/** One SQL file of the migrations folder. */
export interface MigrationFile {
  /** The file name, as recorded in the migrations table (`20261202135400_create_users.sql`). */
  name: string;
  /** The numeric prefix: files run in its order (numerically, so 2_ comes before 10_). */
  version: bigint;
  path: string;
  sql: string;
  /** sha256 of the file's bytes, hex. */
  checksum: string;
  /** First line `-- migrate: no-transaction`: run outside a transaction (CREATE INDEX CONCURRENTLY …). */
  transaction: boolean;
}

/** A problem with the folder itself (names, duplicates): reported before anything connects. */
export class MigrationFilesError extends Error {}

const NAME = /^(\d+)[_-][\w.-]*\.sql$/;
const NO_TRANSACTION = /^--\s*migrate:\s*no-transaction\s*$/i;

export function checksumOf(bytes: Buffer | string): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/**
 * Reads every `.sql` file of `dir`, ordered by numeric prefix. A `.sql` file without one, or two
 * files with the same prefix, is refused: the order they would run in would be a guess.
 */
export async function readMigrationFiles(dir: string): Promise<MigrationFile[]> {
  let entries: string[];
  try {
    entries = (await readdir(dir, { withFileTypes: true })).filter((e) => e.isFile() && e.name.endsWith('.sql')).map((e) => e.name);
  } catch (error) {
    throw new MigrationFilesError(`cannot read the migrations folder ${dir} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  const files: MigrationFile[] = [];
  for (const name of entries) {
    const match = NAME.exec(name);
    if (!match) throw new MigrationFilesError(`${name}: a migration file name starts with a number and an underscore (20261202135400_create_users.sql)`);
    const path = join(dir, name);
    const bytes = await readFile(path);
    const sql = bytes.toString('utf8');
    files.push({ name, version: BigInt(match[1]), path, sql, checksum: checksumOf(bytes), transaction: !NO_TRANSACTION.test(sql.split('\n', 1)[0].trim()) });
  }
  files.sort((a, b) => (a.version < b.version ? -1 : a.version > b.version ? 1 : a.name < b.name ? -1 : 1));
  for (let i = 1; i < files.length; i++) {
    if (files[i].version === files[i - 1].version) throw new MigrationFilesError(`${files[i - 1].name} and ${files[i].name} have the same number: which runs first would be a guess`);
  }
  return files;
}

/** The 1-based line of a character offset (the server's error position, 1-based too). */
export function lineOf(sql: string, position: number): number {
  return sql.slice(0, Math.max(0, position - 1)).split('\n').length;
}

/** `<UTC timestamp>_<name>.sql` for `migrate create`: sortable, and two engineers rarely pick the same second. */
export function newMigrationName(name: string, now = new Date()): string {
  const slug = name.trim().toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  if (!slug) throw new MigrationFilesError('migrate create needs a name of letters or digits (migrate create create_users)');
  const stamp = now.toISOString().replace(/\D/g, '').slice(0, 14);
  return `${stamp}_${slug}.sql`;
}
