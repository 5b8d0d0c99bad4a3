/**
 * `npm run resilience [-- --runs=N] [-- --note="…"]`: runs the resilience suite (test/resilience,
 * against the built demo) and the specs whose figures the README quotes elsewhere (FIGURE_SPECS:
 * primary failover, password rotation, pipelining) N times, and keeps every figure the specs report
 * in one dated file, test/resilience/results/<date>.md: the machine, the commit, the jest exit codes,
 * the README's "Failure behaviour" table and its failover, rotation and pipelining sentences
 * generated from the figures (ranges over the runs), and the figures themselves.
 * test/resilience/readme-figures.spec.ts checks that the README holds exactly what is generated from
 * the file it names.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMachine } from '../../bench/support/machine.js';
import { findPostgresBinaries, resolveServerAccount } from '../../src/local-postgres/postgres-binaries.js';
import { failureTable } from './failure-table.js';
import { type FigureRecord, RESULTS_FILE_ENV } from './figures.js';
import { readmeSentences } from './readme-sentences.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RESULTS_DIR = join('test', 'resilience', 'results');
/** What jest runs (path patterns): the resilience suite, and the specs behind the README's failover, rotation and pipelining figures. */
const FIGURE_SPECS = ['test/resilience/', 'test/scale-out/failover.e2e-spec.ts', 'test/credentials/password-rotation.e2e-spec.ts', 'test/pipeline/'];

/** The commit the build and the specs came from, and how many files differed from it (the results directory aside). */
function source(): string {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: ROOT }).toString().trim();
  const count = (...paths: string[]) => git('status', '--porcelain', '--untracked-files=all', '--', ...paths).split('\n').filter(Boolean).length;
  const inSrc = count('src');
  const elsewhere = count('.', ':!src', `:!${RESULTS_DIR}`);
  const changes = [inSrc && `${inSrc} under src/`, elsewhere && `${elsewhere} elsewhere`].filter(Boolean).join(' and ');
  return `commit ${git('rev-parse', '--short', 'HEAD')}${changes ? ` plus uncommitted files: ${changes}` : ' (clean tree)'}`;
}

async function packageVersion(name: string): Promise<string> {
  return (JSON.parse(await readFile(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version;
}

function runJest(resultsFile: string): Promise<number> {
  return new Promise((resolve) => {
    // readme-figures.spec.ts checks the README against a kept file: not a measurement, and the file is not written yet.
    const jest = [join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', ...FIGURE_SPECS, '--testPathIgnorePatterns', 'readme-figures'];
    const child = spawn(process.execPath, ['--experimental-vm-modules', ...jest], {
      cwd: ROOT,
      env: { ...process.env, [RESULTS_FILE_ENV]: resultsFile },
      stdio: 'inherit',
    });
    child.once('exit', (code) => resolve(code ?? 1));
  });
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const runs = Number(args.find((a) => a.startsWith('--runs='))?.slice('--runs='.length) ?? 1);
  const note = args.find((a) => a.startsWith('--note='))?.slice('--note='.length);
  if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a whole number, at least 1');

  const startedAt = new Date();
  const builtFrom = source(); // npm run resilience built dist just before
  // Only the version is wanted here: a throwaway staging directory in case the binaries need linking.
  const staging = await mkdtemp(join(tmpdir(), 'secure-pg-version-'));
  await chmod(staging, 0o755);
  const bins = await findPostgresBinaries(resolveServerAccount(), staging).finally(() => rm(staging, { recursive: true, force: true }));
  const serverVersion = bins.version;
  const [date, cpu, os] = describeMachine({ serverVersion, tls: '' }, startedAt);
  await mkdir(join(ROOT, RESULTS_DIR), { recursive: true });

  const records: Array<FigureRecord & { run: number }> = [];
  const exitCodes: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const file = join(ROOT, RESULTS_DIR, `.run-${startedAt.getTime()}-${run}.jsonl`);
    await writeFile(file, '');
    exitCodes.push(await runJest(file));
    const lines = (await readFile(file, 'utf8')).split('\n').filter(Boolean);
    records.push(...lines.map((line) => ({ run, ...(JSON.parse(line) as FigureRecord) })));
    await rm(file, { force: true });
  }

  const generated = (make: () => string) => {
    try {
      return make();
    } catch (error) {
      return `Not generated: ${(error as Error).message}`;
    }
  };
  const table = generated(() => failureTable(records));
  const sentences = readmeSentences(records);
  const name = join(RESULTS_DIR, `${startedAt.toISOString().slice(0, 19).replace(/:/g, '-')}.md`);
  const text = [
    '# Resilience figures (`npm run resilience`)',
    '',
    date,
    cpu,
    os,
    `PostgreSQL ${serverVersion} (${bins.source} binaries): throwaway local clusters on the same machine, loopback TCP, verify-full TLS; fsync off; synchronous_commit off (on for the server-outage and failover specs)`,
    `Packages: pg ${await packageVersion('pg')}, @nestjs/core ${await packageVersion('@nestjs/core')}`,
    ...(note ? [`Note: ${note}`] : []),
    `Runs: ${runs} of \`jest ${FIGURE_SPECS.join(' ')}\` (the specs, not readme-figures.spec.ts), the demo built (\`npm run build\`) from ${builtFrom}`,
    `Jest exit codes: ${exitCodes.join(', ')}`,
    '',
    '## The README\'s "Failure behaviour" table, generated from the figures below (ranges over the runs)',
    '',
    table,
    '',
    ...sentences.flatMap(({ section, make }) => [`## The README's "${section}" figures, generated from the figures below`, '', generated(make), '']),
    '## Figures (one line per reported figure; `run` numbers the jest run)',
    '',
    '```jsonl',
    ...records.map((r) => JSON.stringify(r)),
    '```',
    '',
  ].join('\n');
  await writeFile(join(ROOT, name), text);
  process.stdout.write(`\nResilience figures written to ${name}\n`);
  return exitCodes.every((code) => code === 0) ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
