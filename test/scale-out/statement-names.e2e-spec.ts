import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { DatabaseService } from '../../src/index.js';
import { type DatabaseApp, startDatabaseApp } from '../support/database-app.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';

const h = harness();
const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };
const INSTANCE = join(import.meta.dirname, 'statement-cache-instance.mjs');

// The same statement shape in both instances (int parameter, one text column), different tables.
const SECRET = 'SELECT totp_seed AS v FROM secrets WHERE id = $1';
const PUBLIC = 'SELECT public_name AS v FROM profiles WHERE id = $1';

/** The other application instance: a process of its own, one statement run per line sent. */
class Instance {
  private output = '';
  private readonly waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => {
      this.output += chunk.toString();
      for (const wake of this.waiters.splice(0)) wake();
    });
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    void this.exited.then(() => {
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  /** The next line the instance prints. */
  async line(): Promise<string> {
    for (;;) {
      const end = this.output.indexOf('\n');
      if (end !== -1) {
        const line = this.output.slice(0, end);
        this.output = this.output.slice(end + 1);
        return line;
      }
      if (this.child.exitCode !== null) throw new Error('instance X exited');
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async run(id: number): Promise<string> {
    this.child.stdin!.write(`run ${id}\n`);
    return this.line();
  }
}

/**
 * Two application instances behind one PgBouncer in transaction mode that the module was not told
 * about (DATABASE_POOLER unset, startup parameters dropped by the pooler: the lenient setup many
 * hosted poolers use), so both keep their statement caches on, and server connections pass from one
 * instance to the other between transactions. With names that could be the same in both processes
 * (nsp_1, nsp_2 … in each), instance Y's Bind of a statement it had prepared on one server connection
 * ran instance X's statement of the same name on another: Y received X's TOTP seed, with no error.
 * The test steers which server connection each step lands on by holding the others in a transaction
 * (the pooler has two).
 */
describe('statement names of two instances behind an unrecognised transaction pooler', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;
  let y: DatabaseApp;
  let x: Instance | undefined;
  const holders: pg.Client[] = [];

  beforeAll(async () => {
    if (!existsSync(join(import.meta.dirname, '..', '..', 'dist', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
    scratch = await scratchDatabase(h.tls);
    bouncer = await startPgbouncer({
      upstream: scratch.cluster,
      ca,
      poolSize: 2,
      ignoreStartupParameters: ['statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout'],
    });
    y = await startDatabaseApp({ url: bouncer.url(), sslRootCert: h.caPem, pooler: 'none', appEnv: 'production', poolMax: 1 });
    for (let i = 0; i < 2; i++) {
      const holder = new pg.Client({ ...scratch.cluster.clientConfig(), host: bouncer.host, port: bouncer.port, ssl: { ca: h.caPem } });
      holder.on('error', () => undefined);
      await holder.connect();
      holders.push(holder);
    }
    // Not through the module: each instance's statement is the first (and only) one it names.
    await holders[0].query(`CREATE TABLE secrets (id int PRIMARY KEY, totp_seed text NOT NULL);
      CREATE TABLE profiles (id int PRIMARY KEY, public_name text NOT NULL);
      INSERT INTO secrets SELECT g, 'seed-' || g FROM generate_series(1, 5) g;
      INSERT INTO profiles SELECT g, 'profile-' || g FROM generate_series(1, 5) g`);
  }, 600_000); // a fresh machine installs pgbouncer first

  afterAll(async () => {
    x?.child.kill();
    await Promise.all(holders.map((holder) => holder.end()));
    await y?.close();
    await bouncer?.stop();
    await scratch?.drop();
  });

  /** Holds a server connection (the only free one, or the one a COMMIT frees next) until release(). */
  const hold = async (holder: pg.Client) => {
    await holder.query('BEGIN');
    return holder.query<{ pid: number }>('SELECT pg_backend_pid() AS pid').then((r) => r.rows[0].pid);
  };
  const release = (holder: pg.Client) => holder.query('COMMIT');

  it("neither instance receives the other's rows: a name the server connection lacks is retried unnamed", async () => {
    const child = spawn(process.execPath, [INSTANCE], { env: { ...process.env, DATABASE_URL: bouncer.url(), CA_PEM: h.caPem, TEXT: SECRET }, stdio: ['pipe', 'pipe', 'inherit'] });
    x = new Instance(child);
    expect(await x.line()).toBe('ready');
    const db = y.app.get(DatabaseService);
    const [h1, h2] = holders;

    // 1. X prepares its statement on server connection B (A is held).
    const a = await hold(h1);
    expect(await x.run(1)).toBe('seed-1');
    // 2. Y prepares its statement on A (B is held).
    const b = await hold(h2);
    expect(b).not.toBe(a);
    await release(h1);
    expect(await db.fetchval(PUBLIC, [2])).toBe('profile-2');
    // 3. Y runs its statement again, now on B, where X's statement lives.
    expect(await hold(h1)).toBe(a);
    await release(h2);
    expect(await db.fetchval(PUBLIC, [3])).toBe('profile-3');
    // 4. And X on A, where Y's lives.
    expect(await hold(h2)).toBe(b);
    await release(h1);
    expect(await x.run(4)).toBe('seed-4');
    await release(h2);

    child.stdin!.end();
    expect(await x.exited).toBe(0);
  });
});
