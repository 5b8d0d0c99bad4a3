import { afterEach, beforeEach, describe, expect, it } from '@jest/globals';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { MIGRATION_LOCK_KEY } from '../../src/secure-database/migrate/run-migrations.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { runCli } from './cli-process.js';

const h = harness();

/**
 * Each test: a database of its own on the shared TLS cluster, owned by the harness `app` role (here
 * the owner role, DATABASE_MIGRATION_URL), and a login role of its own with DML only on what the
 * owner creates (DATABASE_URL), set up as `local-db start` sets up its roles.
 */
let owner: LocalPostgresCluster;
let appRole: { user: string; password: string };
let dropDatabase: () => Promise<void>;
let dir: string;

beforeEach(async () => {
  const scratch = await scratchDatabase(h.tls);
  owner = scratch.cluster;
  dropDatabase = scratch.drop;
  appRole = { user: `rt_${randomBytes(5).toString('hex')}`, password: randomBytes(12).toString('base64url') };
  const { database, user } = owner.facts;
  await h.tls.withSuperuser(async (admin) => {
    const ddl = (await admin.query('SELECT format($$CREATE ROLE %I LOGIN PASSWORD %L$$, $1::text, $2::text) AS ddl', [appRole.user, appRole.password])).rows[0].ddl;
    await admin.query(ddl);
    await admin.query(`GRANT CONNECT ON DATABASE ${database} TO ${appRole.user}`);
  });
  await h.tls.withSuperuser(async (admin) => {
    // As local-db does: the owner owns public (before PostgreSQL 15 the bootstrap superuser owns it, and
    // only PUBLIC's CREATE, revoked here, let the owner create in it).
    await admin.query(`ALTER SCHEMA public OWNER TO ${user}; REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO ${appRole.user}`);
    await admin.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${user} IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO ${appRole.user}`);
    await admin.query(`ALTER DEFAULT PRIVILEGES FOR ROLE ${user} IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO ${appRole.user}`);
  }, database);
  dir = await mkdtemp(join(tmpdir(), 'migrations-'));
});

afterEach(async () => {
  await dropDatabase();
  await h.tls.withSuperuser((admin) => admin.query(`DROP ROLE IF EXISTS ${appRole.user}`));
  await rm(dir, { recursive: true, force: true });
});

const env = (extra: Record<string, string> = {}) => ({
  DATABASE_MIGRATION_URL: owner.url(),
  DATABASE_URL: owner.url({}, appRole),
  DATABASE_SSL_ROOT_CERT: h.caPath,
  ...extra,
});
const migrate = (args: string[] = [], extra: Record<string, string> = {}) =>
  runCli(['migrate', '--dir', dir, ...args], env(extra), { secrets: [owner.facts.password, appRole.password] });
const write = (name: string, sql: string) => writeFile(join(dir, name), sql);
const query = <T extends pg.QueryResultRow>(text: string, as: 'owner' | 'app' = 'owner') => {
  const config = as === 'owner' ? owner.clientConfig() : { ...owner.clientConfig(), user: appRole.user, password: appRole.password };
  const client = new pg.Client(config);
  return client.connect().then(() => client.query<T>(text)).finally(() => client.end());
};
const recorded = () => query<{ name: string; checksum: string }>('SELECT name, checksum FROM public.secure_migrations ORDER BY applied_at, name');

describe('migrate (the built CLI) on a real cluster', () => {
  it('applies files in numeric order (2_ before 10_), multi-statement files whole, records name and sha256; a second run has nothing to do', async () => {
    await write('1_users.sql', 'CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\nCREATE TABLE notes (id bigint PRIMARY KEY, user_id bigint REFERENCES users);\nINSERT INTO users (name) VALUES ($$ada$$);\n');
    await write('2_email.sql', 'ALTER TABLE users ADD COLUMN email text;\n');
    // Needs the column of 2_: fails if run in text order (10_ < 2_).
    await write('10_backfill.sql', "UPDATE users SET email = name || '@example.test';\n");
    const run = await migrate();
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/^applied 1_users\.sql in \d+ ms\napplied 2_email\.sql in \d+ ms\napplied 10_backfill\.sql in \d+ ms\n3 migration\(s\) applied\n$/);
    const sha = async (name: string) => createHash('sha256').update(await readFile(join(dir, name))).digest('hex');
    expect((await recorded()).rows).toEqual([
      { name: '1_users.sql', checksum: await sha('1_users.sql') },
      { name: '2_email.sql', checksum: await sha('2_email.sql') },
      { name: '10_backfill.sql', checksum: await sha('10_backfill.sql') },
    ]);
    expect((await query('SELECT email FROM users')).rows).toEqual([{ email: 'ada@example.test' }]);

    const again = await migrate();
    expect({ code: again.code, stdout: again.stdout }).toEqual({ code: 0, stdout: 'nothing to apply: the database is up to date\n' });
    const status = await migrate(['status']);
    expect(status.code).toBe(0);
    expect(status.stdout.split('\n').filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2).join(' '))).toEqual(['applied 1_users.sql', 'applied 2_email.sql', 'applied 10_backfill.sql']);
  });

  it('the tables belong to the owner role; the app role (DATABASE_URL) can read and write rows but not create, alter or drop', async () => {
    await write('1_users.sql', 'CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n');
    expect((await migrate()).code).toBe(0);
    expect((await query("SELECT tableowner FROM pg_tables WHERE tablename IN ('users', 'secure_migrations') ORDER BY tablename")).rows).toEqual([
      { tableowner: owner.facts.user },
      { tableowner: owner.facts.user },
    ]);
    expect((await query("INSERT INTO users (name) VALUES ('ada') RETURNING id", 'app')).rows).toEqual([{ id: '1' }]);
    expect((await query("UPDATE users SET name = 'grace'", 'app')).rowCount).toBe(1);
    expect((await query('DELETE FROM users', 'app')).rowCount).toBe(1);
    for (const ddl of ['CREATE TABLE intruder (id int)', 'DROP TABLE users', 'ALTER TABLE users ADD COLUMN x int', 'TRUNCATE users']) {
      await expect(query(ddl, 'app')).rejects.toMatchObject({ code: '42501' });
    }
  });

  it('an applied file edited afterwards: exit 1 naming the file (not its contents), and nothing else is applied', async () => {
    await write('1_users.sql', 'CREATE TABLE users (id int);\n');
    expect((await migrate()).code).toBe(0);
    await write('1_users.sql', 'CREATE TABLE users (id int, edited_column_xyz text);\n');
    await write('2_more.sql', 'CREATE TABLE more (id int);\n');
    const run = await migrate();
    expect(run.code).toBe(1);
    expect(run.stderr).toBe(
      'nestjs-secure-postgres migrate: 1_users.sql was changed after being applied (sha256 differs from the one recorded): restore the applied version and put the change in a new migration\n',
    );
    expect((await recorded()).rows.map((r) => r.name)).toEqual(['1_users.sql']);
    expect((await query("SELECT to_regclass('public.more') AS t")).rows).toEqual([{ t: null }]);
    expect((await migrate(['status'])).stdout).toMatch(/^changed +1_users\.sql .*\npending +2_more\.sql\n$/);
  });

  it('a failing file: exit 1 naming the file, the SQLSTATE and its line (no SQL); that file rolled back, earlier ones kept, later ones not run', async () => {
    await write('1_ok.sql', 'CREATE TABLE ok (id int);\n');
    await write('2_bad.sql', 'CREATE TABLE half (id int);\nINSERT INTO half VALUES (1);\nSELECT no_such_column FROM half;\n');
    await write('3_later.sql', 'CREATE TABLE later (id int);\n');
    const run = await migrate();
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^applied 1_ok\.sql in \d+ ms\n$/);
    expect(run.stderr).toBe('nestjs-secure-postgres migrate: 2_bad.sql failed: SQLSTATE 42703 at line 3; rolled back, later migrations not run\n');
    expect((await query("SELECT to_regclass('public.ok')::text AS ok, to_regclass('public.half')::text AS half, to_regclass('public.later')::text AS later")).rows).toEqual([
      { ok: 'ok', half: null, later: null },
    ]);
    expect((await recorded()).rows.map((r) => r.name)).toEqual(['1_ok.sql']);
  });

  it('a file whose first line is "-- migrate: no-transaction" runs outside a transaction (CREATE INDEX CONCURRENTLY)', async () => {
    await write('1_users.sql', 'CREATE TABLE users (id int, email text);\n');
    await write('2_index.sql', '-- migrate: no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n');
    const run = await migrate();
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(/applied 2_index\.sql \(no transaction\) in \d+ ms/);
    expect((await query<{ indisvalid: boolean }>("SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass")).rows).toEqual([{ indisvalid: true }]);
    expect((await recorded()).rows.map((r) => r.name)).toEqual(['1_users.sql', '2_index.sql']);
  });

  it('two concurrent runs: both wait for the lock; the first applies everything, the second finds nothing to do', async () => {
    await write('1_users.sql', 'CREATE TABLE users (id int);\n');
    await write('2_posts.sql', 'CREATE TABLE posts (id int);\n');
    // The test holds the migration lock first, so both runs are certainly waiting on it at once.
    const holder = await h.tls.superuserClient(owner.facts.database);
    try {
      await holder.query('SELECT pg_advisory_lock($1::int8)', [MIGRATION_LOCK_KEY.toString()]);
      const runs = [migrate(), migrate()];
      const deadline = Date.now() + 20_000;
      for (;;) {
        const { rows } = await holder.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        );
        if (rows[0].n === 2) break;
        if (Date.now() > deadline) throw new Error(`expected 2 runs waiting for the lock, saw ${rows[0].n}`);
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      await holder.query('SELECT pg_advisory_unlock($1::int8)', [MIGRATION_LOCK_KEY.toString()]);
      const [a, b] = await Promise.all(runs);
      expect([a.code, b.code]).toEqual([0, 0]);
      for (const run of [a, b]) expect(run.stdout).toMatch(/^another migrate run holds the migration lock: waiting for it \(up to 600 s\)\n/);
      const outcomes = [a, b].map((run) => run.stdout.split('\n').filter(Boolean).at(-1)).sort();
      expect(outcomes).toEqual(['2 migration(s) applied', 'nothing to apply: the database is up to date']);
      expect((await recorded()).rows.map((r) => r.name)).toEqual(['1_users.sql', '2_posts.sql']);
    } finally {
      await holder.end();
    }
  });

  it("connects with the module's TLS policy: DATABASE_SSL_ROOT_CERT of an unrelated CA is refused (exit 1, nothing applied)", async () => {
    await write('1_users.sql', 'CREATE TABLE users (id int);\n');
    const run = await migrate([], { DATABASE_SSL_ROOT_CERT: h.unrelatedCaPath });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^nestjs-secure-postgres migrate: migrate could not run: DB_TLS_VERIFICATION_FAILED\n$/);
    expect((await query("SELECT to_regclass('public.secure_migrations') AS t")).rows).toEqual([{ t: null }]);
  });

  it('without DATABASE_MIGRATION_URL: migrates as the DATABASE_URL role, with a warning saying why that is wrong', async () => {
    await write('1_users.sql', 'SELECT 1;\n');
    const run = await runCli(['migrate', '--dir', dir], { DATABASE_URL: owner.url(), DATABASE_SSL_ROOT_CERT: h.caPath }, { secrets: [owner.facts.password] });
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/^warning: DATABASE_MIGRATION_URL is not set: migrating as the DATABASE_URL role\./);
  });

  it("DATABASE_PASSWORD (the app role's) does not replace the owner's password of DATABASE_MIGRATION_URL", async () => {
    await write('1_users.sql', 'CREATE TABLE users (id int);\n');
    const run = await migrate([], { DATABASE_PASSWORD: appRole.password });
    expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
    expect((await query("SELECT tableowner FROM pg_tables WHERE tablename = 'users'")).rows).toEqual([{ tableowner: owner.facts.user }]);
  });

  it('migrate create writes an empty timestamped file; names without a numeric prefix are refused (exit 2)', async () => {
    const created = await runCli(['migrate', 'create', 'Create Users', '--dir', dir], {});
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(new RegExp(`^created ${dir}/\\d{14}_create_users\\.sql\\n$`));
    await write('users.sql', 'SELECT 1;\n');
    const refused = await migrate(['status']);
    expect(refused).toMatchObject({ code: 2, stderr: expect.stringMatching(/users\.sql: a migration file name starts with a number/) });
  });
});
