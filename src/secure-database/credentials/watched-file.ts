import { type BigIntStats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';

/** What `parse` makes of a file's text: the value to use, or why this version cannot be used (never quoting the text). */
export type Parsed<T> = { value: T } | { problem: string };

/** Told when a file's value changed, or when a new version of it cannot be used (once per version; `problem` names the setting). */
export type FileReport = (event: { kind: 'changed' | 'unusable'; label: string; problem?: string }) => void;

/** Device, inode, size and modification time (ns): a rewrite in place or by rename (Kubernetes swaps a ..data symlink) changes it. */
function stampOf(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}`;
}

/**
 * A secret or certificate file, checked for every new connection and read again only when it
 * changed: each check costs one fs.stat. A version that cannot be used (a writer caught half way,
 * an empty file, a file gone for a moment during a rotation) is not taken: the last good value
 * stays, and the problem is reported once per version, naming the setting, never the content.
 *
 * fs.stat cannot see a rewrite that keeps the size and the modification time (a `touch -r`, a
 * filesystem with coarse timestamps): `current({ force: true })` reads the file regardless, which
 * the pool does once when a new connection's password is refused (28P01).
 */
export class WatchedFile<T> {
  #value: T;
  #stamp?: string;
  #reported?: string;
  #version = 0;

  constructor(
    readonly path: string,
    /** The setting that names the file (DATABASE_PASSWORD_FILE …), for messages. */
    readonly label: string,
    private readonly parse: (text: string) => Parsed<T>,
    /** The value read and checked at startup. */
    initial: T,
  ) {
    this.#value = initial;
  }

  /** Bumped each time a new value is taken from the file. */
  get version(): number {
    return this.#version;
  }

  /** The last good value, without checking the file. */
  get value(): T {
    return this.#value;
  }

  /** The file's value now: read again when fs.stat says it changed (or always, with `force`). */
  async current(report: FileReport, { force = false } = {}): Promise<T> {
    let stamp: string;
    try {
      stamp = stampOf(await stat(this.path, { bigint: true }));
    } catch (error) {
      this.unusable(report, '*missing*', `${this.label} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      return this.#value;
    }
    if (!force && stamp === this.#stamp) return this.#value;
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (error) {
      this.unusable(report, stamp, `${this.label} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      return this.#value;
    }
    const parsed = this.parse(text);
    if ('problem' in parsed) {
      // Not remembered as read: the next check reads it again (the writer may not be done yet).
      this.unusable(report, stamp, parsed.problem);
      return this.#value;
    }
    this.#stamp = stamp;
    this.#reported = undefined;
    if (!sameValue(parsed.value, this.#value)) {
      this.#value = parsed.value;
      this.#version++;
      report({ kind: 'changed', label: this.label });
    }
    return this.#value;
  }

  private unusable(report: FileReport, stamp: string, problem: string): void {
    if (this.#reported === stamp) return;
    this.#reported = stamp;
    report({ kind: 'unusable', label: this.label, problem });
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  return [...keys].every((k) => (a as Record<string, unknown>)[k] === (b as Record<string, unknown>)[k]);
}
