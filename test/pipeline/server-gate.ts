import type pg from 'pg';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';

/**
 * A table lock the test holds on a superuser connection of its own: every statement reading the table
 * waits on the server, for as long as the test likes, until `release()`. What the module does with a
 * statement that is "still running" is then a fact the test controls, not a race against a pg_sleep.
 */
export class ServerGate {
  private constructor(private readonly admin: pg.Client) {}

  /** Takes an ACCESS EXCLUSIVE lock on `table` (in `cluster`'s database) inside an open transaction. */
  static async close(cluster: LocalPostgresCluster, table: string): Promise<ServerGate> {
    const admin = await cluster.superuserClient(cluster.facts.database);
    await admin.query('BEGIN');
    await admin.query(`LOCK TABLE ${admin.escapeIdentifier(table)} IN ACCESS EXCLUSIVE MODE`);
    return new ServerGate(admin);
  }

  /** Ends the transaction: the statements waiting on the lock run. Idempotent. */
  async release(): Promise<void> {
    await this.admin.query('COMMIT').catch(() => undefined);
    await this.admin.end().catch(() => undefined);
  }
}

export interface BlockedBackend {
  pid: number;
  query: string;
}

/**
 * Polls pg_stat_activity until exactly `count` backends of `applicationName` in `cluster`'s database
 * run a statement containing `marker` and wait on a heavyweight lock, each for longer than
 * `runningLongerThanMs` by the server's clock (the client sent it earlier still). Synchronises on the
 * server's state, never on elapsed time; gives up with an error after `attempts` polls.
 */
export async function waitUntilBlocked(
  cluster: LocalPostgresCluster,
  { applicationName, marker, count, runningLongerThanMs = 0, attempts = 400 }: { applicationName: string; marker: string; count: number; runningLongerThanMs?: number; attempts?: number },
): Promise<BlockedBackend[]> {
  return cluster.withSuperuser(async (admin) => {
    let seen: BlockedBackend[] = [];
    for (let i = 0; i < attempts; i++) {
      const { rows } = await admin.query<BlockedBackend & { old: boolean }>(
        `SELECT pid, query, clock_timestamp() - query_start > make_interval(secs => $4::float8 / 1000) AS old
           FROM pg_stat_activity
          WHERE datname = $1 AND application_name = $2 AND state = 'active' AND wait_event_type = 'Lock'
            AND strpos(query, $3) > 0
          ORDER BY pid`,
        [cluster.facts.database, applicationName, marker, runningLongerThanMs],
      );
      seen = rows.map(({ pid, query }) => ({ pid, query }));
      if (rows.length === count && rows.every((r) => r.old)) return seen;
      await new Promise((resolve) => setTimeout(resolve, 10)); // poll interval, not a synchronisation
    }
    throw new Error(`expected ${count} backend(s) blocked on "${marker}"; the server shows ${JSON.stringify(seen)}`);
  });
}
