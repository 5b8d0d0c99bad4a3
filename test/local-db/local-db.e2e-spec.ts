import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { DatabaseService, getDatabaseServiceToken, readDatabaseEnv } from '../../src/index.js';
import { startDatabaseApp } from '../support/database-app.js';
import { runCli } from '../migrate/cli-process.js';

/**
 * `local-db` as a developer runs it: the built CLI in an app's folder. The steps share one server
 * (≈5 s to create), so they run in order: start, use, stop/start, reset.
 */
let cwd: string;
let env: Record<string, string> = {};

const cli = (args: string[], extra: { secrets?: string[] } = {}) => runCli(['local-db', ...args], {}, { cwd, secrets: extra.secrets });
const passwords = () => [env.DATABASE_URL, env.DATABASE_MIGRATION_URL].map((url) => decodeURIComponent(new URL(url).password));
const readEnv = async () => Object.fromEntries((await readFile(join(cwd, '.env'), 'utf8')).split('\n').filter((l) => /^\w+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
const connectAs = async (url: string) => {
  const { username, password, hostname, port, pathname } = new URL(url);
  const client = new pg.Client({
    host: hostname,
    port: Number(port),
    user: username,
    password: decodeURIComponent(password),
    database: pathname.slice(1),
    ssl: { ca: await readFile(env.DATABASE_SSL_ROOT_CERT, 'utf8'), servername: 'localhost' },
  });
  await client.connect();
  return client;
};

beforeAll(async () => {
  cwd = await mkdtemp(join(tmpdir(), 'local-db-app-'));
  // Run as root, the server runs as `postgres`, which must reach .secure-postgres/ inside.
  await chmod(cwd, 0o755);
  await writeFile(join(cwd, '.env'), 'PORT=3000\n');
});

afterAll(async () => {
  // Whatever a failed step left running.
  await cli(['stop']);
  await rm(cwd, { recursive: true, force: true });
});

describe('local-db (the built CLI) in an app folder', () => {
  it('start --write-env: creates the server, prints the .env lines without passwords, writes them to .env (0600, other lines kept); it outlives the CLI', async () => {
    const run = await cli(['start', '--write-env']);
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    env = await readEnv();
    expect(env).toEqual({
      PORT: '3000',
      DATABASE_URL: expect.stringMatching(/^postgresql:\/\/app:[\w-]{20,}@127\.0\.0\.1:\d+\/app\?sslmode=verify-full$/),
      DATABASE_SSL_ROOT_CERT: join(cwd, '.secure-postgres', 'ca.crt'),
      DATABASE_MIGRATION_URL: expect.stringMatching(/^postgresql:\/\/app_owner:[\w-]{20,}@127\.0\.0\.1:\d+\/app\?sslmode=verify-full$/),
      APP_ENV: 'development',
    });
    const port = new URL(env.DATABASE_URL).port;
    expect(run.stdout).toContain(`created on 127.0.0.1:${port}`);
    expect(run.stdout).toContain(`DATABASE_URL=postgresql://app:***@127.0.0.1:${port}/app?sslmode=verify-full\n`);
    expect(run.stdout).toContain(`DATABASE_MIGRATION_URL=postgresql://app_owner:***@127.0.0.1:${port}/app?sslmode=verify-full\n`);
    for (const password of passwords()) expect(run.stdout).not.toContain(password);
    expect((await stat(join(cwd, '.env'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(cwd, '.secure-postgres', 'state.json'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(cwd, '.secure-postgres', '.gitignore'), 'utf8')).toBe('*\n');
    // The CLI has exited: the server answers anyway.
    const client = await connectAs(env.DATABASE_URL);
    await client.end();
  });

  it('an app (SecureDatabaseModule, Nest testing module) connects with verify-full from the .env values; migrate runs as the owner; the app role has DML, not DDL', async () => {
    await mkdir(join(cwd, 'migrations'));
    await writeFile(join(cwd, 'migrations', '1_notes.sql'), 'CREATE TABLE notes (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, body text NOT NULL);\n');
    const migrated = await runCli(['migrate'], env, { cwd, secrets: passwords() });
    expect({ code: migrated.code, stderr: migrated.stderr }).toEqual({ code: 0, stderr: '' });

    const started = await startDatabaseApp(readDatabaseEnv(env));
    try {
      expect(started.db.config.tls).toMatchObject({ mode: 'verify-full', verifiesChain: true, verifiesHostname: true });
      expect(started.db.lastTls).toMatchObject({ ssl: true });
      const db = started.app.get<DatabaseService>(getDatabaseServiceToken());
      expect(await db.fetch('INSERT INTO notes (body) VALUES ($1) RETURNING id, body', ['hello'])).toEqual([{ id: '1', body: 'hello' }]);
      expect(await db.fetch('SELECT current_user AS role, (SELECT tableowner FROM pg_tables WHERE tablename = $1) AS owner', ['notes'])).toEqual([
        { role: 'app', owner: 'app_owner' },
      ]);
      await expect(db.query('CREATE TABLE intruder (id int)')).rejects.toMatchObject({ sqlstate: '42501' });
      await expect(db.query('DROP TABLE notes')).rejects.toMatchObject({ sqlstate: '42501' });
    } finally {
      await started.close();
    }
  });

  it('status while running; start again reuses it; stop, and status says stopped (exit 1) and connections are refused; start brings the data back', async () => {
    const port = new URL(env.DATABASE_URL).port;
    const status = await cli(['status'], { secrets: passwords() });
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^running on 127\\.0\\.0\\.1:${port} `));
    expect((await cli(['start'], { secrets: passwords() })).stdout).toMatch(new RegExp(`^already running on 127\\.0\\.0\\.1:${port} `));

    expect((await cli(['stop'])).stdout).toBe('stopped\n');
    const stopped = await cli(['status'], { secrets: passwords() });
    expect(stopped.code).toBe(1);
    expect(stopped.stdout).toMatch(/^stopped on /);
    await expect(connectAs(env.DATABASE_URL)).rejects.toMatchObject({ code: 'ECONNREFUSED' });

    expect((await cli(['start'], { secrets: passwords() })).stdout).toMatch(new RegExp(`^started on 127\\.0\\.0\\.1:${port} `));
    const client = await connectAs(env.DATABASE_URL);
    try {
      expect((await client.query('SELECT body FROM notes')).rows).toEqual([{ body: 'hello' }]);
    } finally {
      await client.end();
    }
  });

  it('reset: a fresh server (new passwords, no tables), the .env lines rewritten', async () => {
    const before = env;
    const run = await cli(['reset', '--write-env'], { secrets: passwords() });
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    env = await readEnv();
    expect(env.DATABASE_URL).not.toBe(before.DATABASE_URL);
    for (const password of passwords()) expect(run.stdout).not.toContain(password);
    const client = await connectAs(env.DATABASE_MIGRATION_URL);
    try {
      expect((await client.query("SELECT to_regclass('public.notes') AS t")).rows).toEqual([{ t: null }]);
    } finally {
      await client.end();
    }
    // The old server is gone (a new port is picked; were it the same, the old password is refused).
    await expect(connectAs(before.DATABASE_URL)).rejects.toMatchObject({ code: expect.stringMatching(/^(ECONNREFUSED|28P01)$/) });
  });
});
