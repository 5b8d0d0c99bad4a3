import { describe, expect, it } from '@jest/globals';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { failureTable, msRange, parseKeptFigures } from './failure-table.js';
import { readmeSentences } from './readme-sentences.js';

const ROOT = join(import.meta.dirname, '..', '..');

/** The README's figures are the ones a kept run measured: generated from the results file it names. */
describe('README "Failure behaviour" figures', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('\n## Failure behaviour\n');
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const named = /`(test\/resilience\/results\/[^`]+\.md)`/.exec(section)?.[1];

  it('name one kept results file, from runs that all passed', () => {
    expect(start).toBeGreaterThan(0);
    expect(named).toBeDefined();
    const kept = readFileSync(join(ROOT, named!), 'utf8');
    expect(kept).toMatch(/^Jest exit codes: 0(, 0)*$/m);
  });

  it('hold exactly the table generated from that file', () => {
    const kept = readFileSync(join(ROOT, named!), 'utf8');
    const table = failureTable(parseKeptFigures(kept));
    expect(kept).toContain(table);
    expect(section).toContain(table);
  });

  it('quote the date and machine of that file', () => {
    const kept = readFileSync(join(ROOT, named!), 'utf8');
    for (const fact of ['Date: ', 'CPU: ', 'OS: ']) {
      const line = kept.split('\n').find((l) => l.startsWith(fact));
      expect(line).toBeDefined();
      expect(section).toContain(line!.slice(fact.length));
    }
  });

  it('format ranges as the table does', () => {
    expect(msRange([47, 169, 80])).toBe('47–169 ms');
    expect(msRange([62])).toBe('62 ms');
    expect(msRange([3100, 3480])).toBe('3.1–3.5 s');
    expect(msRange([980, 1020])).toBe('1.0 s');
    expect(msRange([500, 1000])).toBe('0.5–1.0 s');
  });
});

/** The failover, rotation and pipelining figures quoted in the README's prose: generated from the kept file each section names. */
describe.each(readmeSentences([]).map(({ section, heading }) => ({ section, heading })))('README "$section" figures', ({ section, heading }) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`\n${heading}\n`);
  const end = readme.slice(start + 1).search(/\n#{1,6} /);
  const text = readme.slice(start, end === -1 ? undefined : start + 1 + end);
  /** The section as one line: the README wraps its prose anywhere. */
  const flat = text.replace(/\s+/g, ' ');
  const named = /`(test\/resilience\/results\/[^`]+\.md)`/.exec(text)?.[1];

  it('name one kept results file, from runs that all passed', () => {
    expect(start).toBeGreaterThan(0);
    expect(named).toBeDefined();
    expect(readFileSync(join(ROOT, named!), 'utf8')).toMatch(/^Jest exit codes: 0(, 0)*$/m);
  });

  it('quote exactly the sentence generated from that file', () => {
    const kept = readFileSync(join(ROOT, named!), 'utf8');
    const sentence = readmeSentences(parseKeptFigures(kept)).find((s) => s.section === section)!.make();
    expect(kept).toContain(sentence);
    expect(flat).toContain(sentence);
  });
});
