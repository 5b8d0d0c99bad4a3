/**
 * `npm run resilience [-- --runs=N] [-- --note="…"] [-- --set=ha]`: runs the resilience suite (test/resilience,
 * against the built demo) and the specs whose figures the README quotes elsewhere (FIGURE_SPECS:
 * primary failover, password rotation, pipelining) N times, and keeps every figure the specs report
 * in one dated file, test/resilience/results/<date>.md: the machine, the commit, the jest exit codes,
 * the README's "Failure behaviour" table and its failover, rotation and pipelining sentences
 * generated from the figures (ranges over the runs), and the figures themselves.
 * test/resilience/readme-figures.spec.ts checks that the README holds exactly what is generated from
 * the file it names. `--set=ha` runs the high-availability spec instead (test/ha/: a pg_auto_failover
 * formation on Debian's PostgreSQL) and keeps test/resilience/results/ha-<date>.md with the README's
 * "High availability" figures.
 */
import { execFileSync, spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describeMachine } from '../../bench/support/machine.js';
import { findPostgresBinaries, resolveServerAccount } from '../../src/local-postgres/postgres-binaries.js';
import { pgAutoFailoverInstall } from '../support/pg-auto-failover.js';
import { failureTable } from './failure-table.js';
import { type FigureRecord, RESULTS_FILE_ENV } from './figures.js';
import { readmeSentences } from './readme-sentences.js';

const ROOT = join(import.meta.dirname, '..', '..');
const RESULTS_DIR = join('test', 'resilience', 'results');
/** What jest runs (path patterns) per set: the resilience suite and the specs behind the README's failover, rotation and pipelining figures; or the HA spec. */
const FIGURE_SETS = {
  resilience: ['test/resilience/', 'test/scale-out/failover.e2e-spec.ts', 'test/credentials/password-rotation.e2e-spec.ts', 'test/pipeline/'],
  ha: ['test/ha/'],
} as const;
type FigureSet = keyof typeof FIGURE_SETS;

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

function runJest(specs: readonly string[], resultsFile: string): Promise<number> {
  return new Promise((resolve) => {
    // readme-figures.spec.ts checks the README against a kept file: not a measurement, and the file is not written yet.
    const jest = [join(ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', ...specs, '--testPathIgnorePatterns', 'readme-figures'];
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
  const set = (args.find((a) => a.startsWith('--set='))?.slice('--set='.length) ?? 'resilience') as FigureSet;
  if (!(set in FIGURE_SETS)) throw new Error(`--set must be one of ${Object.keys(FIGURE_SETS).join(', ')}`);
  const specs = FIGURE_SETS[set];

  const startedAt = new Date();
  const builtFrom = source(); // npm run resilience built dist just before
  const { serverVersion, serverLine } = set === 'ha' ? await haServer() : await localServer();
  const [date, cpu, os] = describeMachine({ serverVersion, tls: '' }, startedAt);
  await mkdir(join(ROOT, RESULTS_DIR), { recursive: true });

  const records: Array<FigureRecord & { run: number }> = [];
  const exitCodes: number[] = [];
  for (let run = 1; run <= runs; run++) {
    const file = join(ROOT, RESULTS_DIR, `.run-${startedAt.getTime()}-${run}.jsonl`);
    await writeFile(file, '');
    exitCodes.push(await runJest(specs, file));
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
  const sentences = readmeSentences(records).filter((s) => s.set === set);
  const name = join(RESULTS_DIR, `${set === 'ha' ? 'ha-' : ''}${startedAt.toISOString().slice(0, 19).replace(/:/g, '-')}.md`);
  const tableSection =
    set === 'resilience'
      ? ['## The README\'s "Failure behaviour" table, generated from the figures below (ranges over the runs)', '', generated(() => failureTable(records)), '']
      : [];
  const text = [
    set === 'ha' ? '# High-availability figures (`npm run resilience -- --set=ha`)' : '# Resilience figures (`npm run resilience`)',
    '',
    date,
    cpu,
    os,
    serverLine,
    `Packages: pg ${await packageVersion('pg')}, @nestjs/core ${await packageVersion('@nestjs/core')}`,
    ...(note ? [`Note: ${note}`] : []),
    `Runs: ${runs} of \`jest ${specs.join(' ')}\` (the specs, not readme-figures.spec.ts), the demo built (\`npm run build\`) from ${builtFrom}`,
    `Jest exit codes: ${exitCodes.join(', ')}`,
    '',
    ...tableSection,
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

/** The local clusters' PostgreSQL (the resilience specs): only the version is wanted, so a throwaway staging directory in case the binaries need linking. */
async function localServer(): Promise<{ serverVersion: string; serverLine: string }> {
  const staging = await mkdtemp(join(tmpdir(), 'secure-pg-version-'));
  await chmod(staging, 0o755);
  const bins = await findPostgresBinaries(resolveServerAccount(), staging).finally(() => rm(staging, { recursive: true, force: true }));
  return {
    serverVersion: bins.version,
    serverLine: `PostgreSQL ${bins.version} (${bins.source} binaries): throwaway local clusters on the same machine, loopback TCP, verify-full TLS; fsync off; synchronous_commit off (on for the server-outage and failover specs)`,
  };
}

/** The formation's PostgreSQL and pg_auto_failover (the HA spec), as installed (or installed now) from Debian's packages. */
async function haServer(): Promise<{ serverVersion: string; serverLine: string }> {
  const { pgAutoctl, binDir } = await pgAutoFailoverInstall();
  const serverVersion = /\(PostgreSQL\)\s+(\S+)/.exec(execFileSync(join(binDir, 'postgres'), ['--version']).toString())?.[1] ?? 'unknown';
  const engine = execFileSync(pgAutoctl, ['--version']).toString().split('\n')[0].trim();
  return {
    serverVersion,
    serverLine:
      `PostgreSQL ${serverVersion} (Debian) with ${engine}: a monitor and three data nodes on the same machine, loopback TCP, verify-full TLS everywhere; ` +
      `number_sync_standbys 1 (synchronous_commit on, ANY 1 standby); fsync off; monitor health checks every 1 s, unhealthy after 2 s, primary_demote_timeout 5 s (defaults 5 s, 20 s, 30 s)`,
  };
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
    process.exit(1);
  },
);
