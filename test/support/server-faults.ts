import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';

// Server-side faults, driven through the cluster's superuser. Helpers marked "destructive" change the
// whole server: use them only on a private cluster (test/support/private-cluster.ts), never the shared ones.

/** One client backend from pg_stat_activity (no query text). */
export interface ActivityRow {
  pid: number;
  applicationName: string;
  user: string | null;
  database: string | null;
  state: string | null;
  waitEventType: string | null;
  waitEvent: string | null;
  backendStart: Date;
  ssl: boolean;
}

const ACTIVITY_SQL = `
  SELECT a.pid, a.application_name AS "applicationName", a.usename AS "user", a.datname AS "database", a.state,
         a.wait_event_type AS "waitEventType", a.wait_event AS "waitEvent", a.backend_start AS "backendStart",
         coalesce(s.ssl, false) AS ssl
  FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid)
  WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()`;

/** Client backends named `applicationName`, other than the admin connection asking. */
export async function appConnections(cluster: LocalPostgresCluster, applicationName: string): Promise<ActivityRow[]> {
  return cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query<ActivityRow>(`${ACTIVITY_SQL} AND a.application_name = $1 ORDER BY a.pid`, [applicationName]);
    return rows;
  });
}

/**
 * Polls pg_stat_activity (every client backend but the poller) until `predicate` holds, and returns those rows.
 * Keeps polling through a server restart. Rejects after `timeoutMs`.
 */
export async function waitForActivity(
  cluster: LocalPostgresCluster,
  predicate: (rows: ActivityRow[]) => boolean,
  timeoutMs = 5000,
): Promise<ActivityRow[]> {
  const deadline = performance.now() + timeoutMs;
  let admin: pg.Client | undefined;
  let last: ActivityRow[] | undefined;
  try {
    for (;;) {
      try {
        admin ??= await cluster.superuserClient();
        last = (await admin.query<ActivityRow>(ACTIVITY_SQL)).rows;
        if (predicate(last)) return last;
      } catch {
        await admin?.end().catch(() => undefined);
        admin = undefined;
      }
      if (performance.now() >= deadline) {
        const seen = last?.map((r) => `${r.pid}:${r.applicationName}:${r.state}`).join(', ') ?? 'no answer from the server';
        throw new Error(`waitForActivity: condition not met within ${timeoutMs} ms (last seen: ${seen || 'no client backends'})`);
      }
      await sleep(25);
    }
  } finally {
    await admin?.end().catch(() => undefined);
  }
}

/**
 * pg_terminate_backend for the app role's connections to the cluster's database, optionally only those
 * named `applicationName` and/or in `state`. Waits until each has exited; returns how many were terminated.
 */
export async function terminateBackends(
  cluster: LocalPostgresCluster,
  filter: { applicationName?: string; state?: 'idle' | 'active' | 'idle in transaction' } = {},
): Promise<number> {
  const { user, database } = cluster.facts;
  return cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query<{ terminated: boolean }>(
      `SELECT pg_terminate_backend(pid, 5000) AS terminated FROM pg_stat_activity
       WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND usename = $1 AND datname = $2
         AND ($3::text IS NULL OR application_name = $3) AND ($4::text IS NULL OR state = $4)`,
      [user, database, filter.applicationName ?? null, filter.state ?? null],
    );
    return rows.filter((r) => r.terminated).length;
  });
}

/**
 * Opens a superuser transaction holding ACCESS EXCLUSIVE on `table` (an unqualified name, resolved by
 * search_path) in `database` until release(). `pid` is the holder's backend.
 */
export async function holdLock(
  cluster: LocalPostgresCluster,
  database: string,
  table: string,
): Promise<{ pid: number; release(): Promise<void> }> {
  const admin = await cluster.superuserClient(database);
  try {
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE ${admin.escapeIdentifier(table)} IN ACCESS EXCLUSIVE MODE`);
    const { rows } = await admin.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    let released: Promise<void> | undefined;
    return {
      pid: rows[0].pid,
      release: () =>
        (released ??= admin
          .query('ROLLBACK')
          .then(() => undefined, () => undefined)
          .finally(() => admin.end().catch(() => undefined))),
    };
  } catch (error) {
    await admin.end().catch(() => undefined);
    throw error;
  }
}

async function currentSetting(cluster: LocalPostgresCluster, name: string): Promise<string> {
  return cluster.withSuperuser(async (admin) => (await admin.query<{ setting: string }>('SELECT setting FROM pg_settings WHERE name = $1', [name])).rows[0].setting);
}

/** Waits until a new session sees `name` = `expected`: pg_reload_conf() only signals the postmaster. */
async function waitForSetting(cluster: LocalPostgresCluster, name: string, expected: string): Promise<void> {
  const deadline = performance.now() + 5000;
  while ((await currentSetting(cluster, name)) !== expected) {
    if (performance.now() >= deadline) throw new Error(`${name} did not become ${expected} after pg_reload_conf()`);
    await sleep(20);
  }
}

/**
 * Destructive. ALTER SYSTEM SET idle_session_timeout and reload; returns when new sessions see it.
 * Sessions already open pick it up only after their next statement (PostgreSQL re-reads the
 * configuration between statements). reset() removes the setting again and waits for the old value.
 */
export async function setIdleSessionTimeout(cluster: LocalPostgresCluster, ms: number): Promise<{ reset(): Promise<void> }> {
  if (!Number.isInteger(ms) || ms < 0) throw new RangeError('idle_session_timeout must be a whole number of ms >= 0');
  const before = await currentSetting(cluster, 'idle_session_timeout');
  await cluster.withSuperuser(async (admin) => {
    await admin.query(`ALTER SYSTEM SET idle_session_timeout = ${ms}`);
    await admin.query('SELECT pg_reload_conf()');
  });
  await waitForSetting(cluster, 'idle_session_timeout', String(ms));
  return {
    async reset() {
      await cluster.withSuperuser(async (admin) => {
        await admin.query('ALTER SYSTEM RESET idle_session_timeout');
        await admin.query('SELECT pg_reload_conf()');
      });
      await waitForSetting(cluster, 'idle_session_timeout', before);
    },
  };
}

const TOO_MANY_CONNECTIONS = '53300';

/**
 * Destructive. Opens connections as a throwaway non-superuser role until the server answers 53300 (or
 * `count` are open), so the next ordinary connection is refused while superusers still get in through
 * superuser_reserved_connections. The exhaustion lasts only while no other connection closes: open any
 * admin handle you need before filling. release() closes them and drops the role.
 */
export async function fillConnections(
  cluster: LocalPostgresCluster,
  count = Infinity,
): Promise<{ opened: number; release(): Promise<void> }> {
  const f = cluster.facts;
  const role = `fault_filler_${randomBytes(4).toString('hex')}`;
  const password = randomBytes(18).toString('base64url');
  await cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query('SELECT format($$CREATE ROLE %I LOGIN PASSWORD %L$$, $1::text, $2::text) AS ddl', [role, password]);
    await admin.query(rows[0].ddl);
  });
  const ca = f.caPath ? await readFile(f.caPath, 'utf8') : undefined;
  const clients: pg.Client[] = [];
  const release = async () => {
    await Promise.all(clients.splice(0).map((c) => c.end().catch(() => undefined)));
    await cluster.withSuperuser((admin) => admin.query(`DROP ROLE IF EXISTS ${admin.escapeIdentifier(role)}`));
  };
  const openOne = async (): Promise<'opened' | 'full'> => {
    const client = new pg.Client({
      host: f.host,
      port: f.port,
      user: role,
      password,
      database: 'postgres',
      ssl: ca ? { ca, servername: f.certificateHosts.find((h) => !/^[\d.:]+$/.test(h)) } : false,
      connectionTimeoutMillis: 5000,
      application_name: 'fault-filler',
    });
    client.on('error', () => undefined); // a restart or terminate while filled is expected
    try {
      await client.connect();
    } catch (error) {
      if ((error as { code?: string }).code === TOO_MANY_CONNECTIONS) return 'full';
      throw error;
    }
    clients.push(client);
    return 'opened';
  };
  try {
    // Parallel batches first. Concurrent attempts, and refused ones whose backend has not exited yet, hold
    // slots too, so a first 53300 can come early: after it, let them exit and probe one at a time until a
    // lone attempt is refused.
    let probing = false;
    while (clients.length < count) {
      const results = await Promise.allSettled(Array.from({ length: probing ? 1 : Math.min(8, count - clients.length) }, openOne));
      const failed = results.find((r) => r.status === 'rejected');
      if (failed) throw failed.reason;
      if (results.some((r) => r.status === 'fulfilled' && r.value === 'full')) {
        if (probing) break;
        probing = true;
        await sleep(100);
      }
    }
    return { opened: clients.length, release };
  } catch (error) {
    await release().catch(() => undefined);
    throw error;
  }
}

/** Destructive. Stops and starts the server; returns how long that took. */
export async function restartCluster(cluster: LocalPostgresCluster, mode: 'fast' | 'immediate' = 'fast'): Promise<{ elapsedMs: number }> {
  const started = performance.now();
  await cluster.restart(mode);
  return { elapsedMs: performance.now() - started };
}
