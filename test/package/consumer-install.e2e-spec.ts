import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/local-postgres/index.js';
import { harness } from '../support/harness.js';

const h = harness();
const REPO = join(import.meta.dirname, '..', '..');
const FIXTURES = join(import.meta.dirname, 'fixtures');
// esm: "type": "module", module nodenext. cjs: no "type", module commonjs (most existing apps), and
// also type-checked with module nodenext (the shape `nest new` gave CommonJS apps lately).
const CONSUMERS = ['esm', 'cjs'] as const;
type Consumer = (typeof CONSUMERS)[number];
// From the local npm cache where it can; the registry for anything missing.
const NPM_FLAGS = ['--prefer-offline', '--no-audit', '--no-fund'];

/** The `npm install …` lines of the README's Install section, exactly as a new user runs them. */
async function readmeInstallCommands(): Promise<string[][]> {
  const readme = await readFile(join(REPO, 'README.md'), 'utf8');
  const section = /^## Install\n([\s\S]*?)^## /m.exec(readme)?.[1] ?? '';
  const block = /```bash\n([\s\S]*?)```/.exec(section)?.[1] ?? '';
  const commands = block.split('\n').filter((line) => line.startsWith('npm install ')).map((line) => line.trim().split(/\s+/).slice(1)); // after `npm`
  if (!commands.some((args) => args.includes('nestjs-secure-postgres'))) throw new Error("README's Install section has no `npm install nestjs-secure-postgres …` block");
  return commands;
}

/** The caller's environment without what `npm test` adds (package, lifecycle, NODE_ENV=test from jest). */
function shellEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !/^(npm_package_|npm_lifecycle_|npm_config_local_prefix$|INIT_CWD$|NODE_ENV$|JEST_)/.test(key)));
}

async function run(command: string, args: string[], cwd: string): Promise<{ stdout: string; stderr: string }> {
  try {
    return await promisify(execFile)(command, args, { cwd, env: shellEnv(), maxBuffer: 32 * 1024 * 1024 });
  } catch (error) {
    const { stdout = '', stderr = '' } = error as { stdout?: string; stderr?: string };
    throw new Error(`\`${command} ${args.join(' ')}\` failed in ${cwd}:\n${stdout}\n${stderr}`);
  }
}

interface PackedFile {
  path: string;
}

describe('the packed package in fresh consumer apps (ESM and CommonJS), as the README installs it', () => {
  let work: string;
  let tarball: string;
  let packedFiles: string[];
  const installLogs = {} as Record<Consumer, string>;
  const running: ChildProcess[] = [];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'secure-pg-consumers-'));
    // Pack from a copy without dist/, as from a fresh clone: prepack must build it. (Packing in
    // the repository would also rebuild the dist/ that other spec files are running.)
    const source = join(work, 'source');
    await mkdir(source);
    for (const name of ['src', 'package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'LICENSE', 'CHANGELOG.md']) {
      await cp(join(REPO, name), join(source, name), { recursive: true });
    }
    await symlink(join(REPO, 'node_modules'), join(source, 'node_modules'), 'dir');
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', work], source); // scripts' output goes to stderr
    const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: PackedFile[] }>;
    tarball = join(work, packed!.filename);
    packedFiles = packed!.files.map((file) => file.path).sort();

    const commands = (await readmeInstallCommands()).map((args) => args.map((arg) => (arg === 'nestjs-secure-postgres' ? tarball : arg)));
    await Promise.all(
      CONSUMERS.map(async (kind) => {
        const dir = join(work, kind);
        await cp(join(FIXTURES, kind), dir, { recursive: true });
        await cp(join(FIXTURES, 'app', 'src'), join(dir, 'src'), { recursive: true });
        installLogs[kind] = '';
        for (const args of commands) {
          const { stdout, stderr } = await run('npm', [...args, ...NPM_FLAGS], dir);
          installLogs[kind] += stdout + stderr;
        }
        await run('npm', ['run', 'build'], dir);
      }),
    );
  }, 240_000);

  afterAll(async () => {
    for (const child of running) child.kill('SIGKILL');
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships dist built from a clean tree, its types and sources-carrying maps, the changelog, and nothing local', async () => {
    expect(packedFiles).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/index.js', 'dist/index.d.ts', 'dist/secure-database/secure-database.module.js']));
    for (const path of packedFiles) expect(path).toMatch(/^(package\.json|README\.md|LICENSE|CHANGELOG\.md|dist\/index\.(js|d\.ts|js\.map)|dist\/(secure-database|local-db|local-postgres)\/.+\.(js|d\.ts|js\.map))$/);
    expect(packedFiles.filter((path) => /\.spec\.|local-postgres\/(index|local-postgres|orphan-reaper|streaming-standby)\.|demo|main\./.test(path))).toEqual([]);

    const installed = join(work, 'esm', 'node_modules', 'nestjs-secure-postgres', 'dist');
    const map = JSON.parse(await readFile(join(installed, 'secure-database', 'service', 'sql.js.map'), 'utf8')) as { sourcesContent?: string[] };
    expect(map.sourcesContent?.[0]).toContain('export const sql');
    // stripInternal: members marked @internal are not part of the published API.
    const declarations = await readdir(installed, { recursive: true });
    for (const file of declarations.filter((name) => name.endsWith('.d.ts'))) {
      expect(await readFile(join(installed, file), 'utf8')).not.toContain('@internal');
    }
  });

  it.each(CONSUMERS)('%s app: compiled with skipLibCheck false, serves verify-full health and queries, named after its package', async (kind) => {
    const dir = join(work, kind);
    // Peer ranges resolve against the registry's current Nest 12 without overrides or conflicts.
    expect(installLogs[kind]).not.toMatch(/ERESOLVE|conflicting peer|overriding peer/i);
    const main = await readFile(join(dir, 'dist', 'main.js'), 'utf8');
    expect(main).toContain(kind === 'esm' ? 'import ' : 'require(');

    const port = await freePort();
    // What a container gives the app: no npm variables, just its configuration.
    const env = { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), APP_ENV: 'production', DATABASE_URL: h.tls.url(), DATABASE_SSL_ROOT_CERT: h.caPath };
    const child = spawn(process.execPath, ['dist/main.js'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.push(child);
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const get = async (path: string) => {
      const response = await fetch(`http://127.0.0.1:${port}${path}`);
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };

    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the ${kind} app exited with ${child.exitCode}:\n${output}`);
      if (Date.now() > deadline) throw new Error(`the ${kind} app did not answer /health/live in 20 s:\n${output}`);
      const live = await get('/health/live').catch(() => undefined);
      if (live?.status === 200) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }

    const health = await get('/health');
    expect(health).toMatchObject({ status: 200, body: { status: 'ok', info: { database: { status: 'up', tls: true, sslmode: 'verify-full', serverIdentityVerified: true } } } });
    const now = await get('/now');
    expect(now.status).toBe(200);
    expect(Math.abs(Date.parse(String(now.body.now)) - Date.now())).toBeLessThan(60_000);
    // Started with `node dist/main.js`, not `npm start`: the name still comes from the app's package.json.
    expect((await get('/session')).body).toEqual({ applicationName: `consumer-${kind}`, columns: ['application_name'], poolTotal: expect.any(Number) });
    expect(output).toContain(`application_name=consumer-${kind}`);
    expect(output).not.toContain(h.tls.facts.password);

    child.kill('SIGTERM');
    const code = await new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
    expect(code).toBe(0);
  });
});
