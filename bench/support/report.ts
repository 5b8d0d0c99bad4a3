import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Writes the run's output to stdout as it happens and keeps it for the results file. */
export class Report {
  private readonly lines: string[] = [];

  line(text = ''): void {
    this.lines.push(text);
    process.stdout.write(`${text}\n`);
  }

  /** A markdown table; the first `textColumns` columns are left-aligned, the rest (numbers) right-aligned. */
  table(header: string[], rows: Array<Array<string | number>>, textColumns = 1): void {
    this.line(`| ${header.join(' | ')} |`);
    this.line(`|${header.map((_, i) => (i < textColumns ? ' --- ' : ' ---: ')).join('|')}|`);
    for (const row of rows) this.line(`| ${row.join(' | ')} |`);
  }

  /** Saves everything printed so far as `<dir>/<timestamp>.txt`; returns the path. */
  async save(dir: string, startedAt: Date): Promise<string> {
    await mkdir(dir, { recursive: true });
    const path = join(dir, `${startedAt.toISOString().slice(0, 19).replaceAll(':', '-')}.txt`);
    await writeFile(path, `${this.lines.join('\n')}\n`);
    return path;
  }
}

export const fixed = (value: number, digits = 2): string => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
export const whole = (value: number): string => (Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a');
export const ratio = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(3)}×` : 'n/a');
export const mb = (bytes: number): string => (bytes / 1024 / 1024).toFixed(1);
