import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DatabaseService, SecureDatabaseError, TlsVerificationError, databaseErrorStatus, sql } from '../../src/index.js';
import type { SecureDatabaseModuleOptions } from '../../src/secure-database/interfaces/secure-database-options.interface.js';
import { createHealthApp } from '../health/health-app.js';
import { reportFigure } from '../resilience/figures.js';
import { type ContinuousWrites, startContinuousWrites, writeFigures } from '../support/continuous-writes.js';
import { startupError } from '../support/database-app.js';
import { type Formation, type FormationNode, MONITOR_SETTINGS, startFormation } from '../support/pg-auto-failover.js';

/** Per app: two apps write at once, one with the statement cache (the default), one pipelined. */
const WRITERS = 2;
/** Errors a failover explains, each a fast, sanitized 503 for the caller. */
const FAILOVER_CODES = ['DB_CONNECTION_FAILED', 'DB_CONNECT_TIMEOUT', 'DB_SERVER_ROLE_MISMATCH', 'DB_READ_ONLY'];

/**
 * pg_auto_failover 2.0 (Debian's, on its PostgreSQL 15): a monitor and two data nodes, each with a
 * certificate naming only its own host. The apps run on the URL `pg_autoctl show uri` hands out
 * (two hosts, target_session_attrs=read-write, sslmode=verify-full, sslrootcert) with the app's
 * credentials added, and write continuously while the engine fails over: planned, after the
 * primary's postgres is killed, and after the primary's whole node is killed. Then the bad input:
 * a host whose certificate names another host, the monitor down, both data nodes down.
 */
describe('pg_auto_failover: the module on the URL the formation hands out', () => {
  let formation: Formation;
  let url: string;
  const apps: INestApplication[] = [];
  let dbs: DatabaseService[];

  const appOptions = (extra: Partial<SecureDatabaseModuleOptions> = {}): SecureDatabaseModuleOptions => ({
    url,
    appEnv: 'test',
    poolMax: WRITERS,
    connectTimeoutMs: 1000,
    acquireTimeoutMs: 2000,
    statementTimeoutMs: 2000,
    ...extra,
  });

  beforeAll(async () => {
    formation = await startFormation();
    url = await formation.appUrl();
    for (const options of [appOptions(), appOptions({ pipelining: true })]) apps.push((await createHealthApp([options])).app);
    dbs = apps.map((app) => app.get(DatabaseService));
    await dbs[0].execute(sql`CREATE TABLE writes (id int PRIMARY KEY, writer int NOT NULL)`);
  }, 150_000);

  afterAll(async () => {
    for (const app of apps) await app.close();
    await formation?.stop();
  }, 60_000);

  const ready = (app = apps[0]) => request(app.getHttpServer()).get('/health/ready');

  /** Ids on `node` (a superuser connection over its socket, not through the module). */
  const idsOn = (node: FormationNode) =>
    formation.withSuperuser(node, formation.app.database, async (c) => new Set((await c.query<{ id: number }>('SELECT id FROM writes')).rows.map((r) => r.id)));

  /** The standby has confirmed everything the primary wrote: quorum commit (synchronous_standby_names ANY 1) is in force. */
  async function waitForSyncStandby(primary: FormationNode): Promise<void> {
    for (const deadline = performance.now() + 30_000; ; ) {
      const rows = await formation
        .withSuperuser(primary, 'postgres', async (c) => (await c.query("SELECT 1 FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")).rows)
        .catch(() => []);
      if (rows.length) return;
      if (performance.now() > deadline) throw new Error(`${primary.name} has no synchronous standby`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Starts the writers on both apps, lets them write, applies `fault`, waits for writes to resume and stops them. */
  async function underWrites(fault: () => Promise<void>, resumeWithinMs: number) {
    const writers: ContinuousWrites[] = dbs.map((db) => startContinuousWrites(db, WRITERS));
    await Promise.all(writers.map((w) => w.succeededAfter(0, 50, 10_000)));
    const faultAt = performance.now();
    await fault();
    const faultDoneAt = performance.now();
    const resumed = await Promise.all(writers.map((w) => w.resumedAfter(faultAt, resumeWithinMs)));
    // A few more writes on the new primary, so its acknowledged writes are checked too.
    await Promise.all(writers.map((w) => w.succeededAfter(faultDoneAt, 20, 10_000).catch(() => undefined)));
    const finished = await Promise.all(writers.map((w) => w.stop()));
    const resumedAt = resumed.includes(undefined) ? undefined : Math.max(...(resumed as number[]));
    return { attempts: writers.flatMap((w) => w.attempts), faultAt, faultDoneAt, resumedAt, finished };
  }

  function expectCleanFailover(run: Awaited<ReturnType<typeof underWrites>>, figures: ReturnType<typeof writeFigures>) {
    expect(run.finished).toEqual([true, true]);
    expect(figures.lostAcknowledgedWrites).toBe(0);
    expect(figures.acknowledgedWrites).toBeGreaterThan(100);
    expect(run.resumedAt).toBeDefined();
    expect(figures.slowestCallMs).toBeLessThan(5000);
    for (const code of figures.failedCodes) expect(FAILOVER_CODES).toContain(code);
  }

  it('the URL pg_autoctl hands out: both hosts, read-write, verify-full; the apps land on the primary over verified TLS', async () => {
    const uri = await formation.formationUri();
    const [n1, n2] = formation.nodes;
    expect(uri).toContain(`${n1.host}:${n1.port},${n2.host}:${n2.port}/`);
    expect(uri).toMatch(/target_session_attrs=read-write/);
    expect(uri).toMatch(/sslmode=verify-full/);
    for (const app of apps) {
      const health = await ready(app);
      expect(health.status).toBe(200);
      expect(health.body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${n1.host}:${n1.port}` });
    }
  });

  it('(a) planned `pg_autoctl perform failover` under writes: 0 acknowledged writes lost, old connections evicted, new ones verified against the new primary', async () => {
    const [n1, n2] = formation.nodes;
    await waitForSyncStandby(n1);
    const run = await underWrites(() => formation.performFailover(), 15_000);
    const figures = writeFigures(run.attempts, run.faultAt, run.resumedAt, await idsOn(n2));
    reportFigure('pg_auto_failover: planned failover', { ...figures, performFailoverMs: Math.round(run.faultDoneAt - run.faultAt) });
    expectCleanFailover(run, figures);
    // Each host verified against its own name: the new primary's certificate names only 127.0.0.3.
    for (const app of apps) expect((await ready(app)).body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${n2.host}:${n2.port}` });
  }, 60_000);

  it('a host whose certificate names another host is refused with the TLS error that says so, not skipped as "no primary"', async () => {
    const [n1, n2] = formation.nodes;
    expect((await formation.primary()).name).toBe(n2.name);
    // node2 reached as localhost: its certificate names 127.0.0.3 only. node1 is the secondary.
    const misnamed = url.replace(`${n2.host}:${n2.port}`, `localhost:${n2.port}`);
    expect(misnamed).toContain(`${n1.host}:${n1.port},localhost:${n2.port}`);
    const error = await startupError(appOptions({ url: misnamed, startupRetries: 0 }));
    expect(error).toBeInstanceOf(TlsVerificationError);
    expect(error.message).toContain('does not name this host');
    expect(error.message).not.toContain(formation.app.password);
  }, 30_000);

  it("(b) the primary's postgres SIGKILLed: its keeper restarts it in place (no failover), 0 acknowledged writes lost", async () => {
    const primary = await formation.primary();
    await waitForSyncStandby(primary);
    const run = await underWrites(() => formation.killPostmaster(primary), 15_000);
    const figures = writeFigures(run.attempts, run.faultAt, run.resumedAt, await idsOn(primary));
    reportFigure("pg_auto_failover: primary's postgres killed", figures);
    expectCleanFailover(run, figures);
    expect((await formation.primary()).name).toBe(primary.name);
  }, 60_000);

  it("(b') the primary's node killed (pg_autoctl and postgres): the monitor promotes the secondary by itself, 0 acknowledged writes lost", async () => {
    const primary = await formation.primary();
    const standby = formation.nodes.find((n) => n !== primary)!;
    await formation.waitForStates({ [primary.name]: 'primary', [standby.name]: 'secondary' });
    await waitForSyncStandby(primary);
    const run = await underWrites(() => formation.crashNode(primary), 30_000);
    const figures = writeFigures(run.attempts, run.faultAt, run.resumedAt, await idsOn(standby));
    reportFigure("pg_auto_failover: primary's node killed", {
      ...figures,
      unhealthyAfterMs: MONITOR_SETTINGS['pgautofailover.node_considered_unhealthy_timeout'],
      primaryDemoteTimeoutMs: MONITOR_SETTINGS['pgautofailover.primary_demote_timeout'],
    });
    expectCleanFailover(run, figures);
    await formation.waitForStates({ [standby.name]: 'wait_primary' });
    expect((await formation.primary()).name).toBe(standby.name);
    expect((await ready()).body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${standby.host}:${standby.port}` });
  }, 60_000);

  it('the monitor down: the apps keep writing on the current primary, without a failed request', async () => {
    await formation.crashMonitor();
    const downAt = performance.now();
    const writers = dbs.map((db) => startContinuousWrites(db, WRITERS));
    await Promise.all(writers.map((w) => w.succeededAfter(downAt, 100, 10_000)));
    await Promise.all(writers.map((w) => w.stop()));
    const attempts = writers.flatMap((w) => w.attempts);
    reportFigure('pg_auto_failover: monitor down', { writes: attempts.length, failedWrites: attempts.filter((a) => a.code).length });
    expect(attempts.filter((a) => a.code)).toEqual([]);
    expect((await ready()).status).toBe(200);
    const restartAt = performance.now();
    await formation.startMonitor();
    process.stdout.write(`monitor restarted in ${Math.round(performance.now() - restartAt)} ms\n`);
  }, 60_000);

  it('both data nodes down: 503s and health down; the apps recover when one returns', async () => {
    const primary = await formation.primary();
    // The other node has been down since the node-crash case.
    expect(formation.nodes.filter((n) => n.running)).toEqual([primary]);
    await formation.crashNode(primary);
    for (const db of dbs) {
      const error = await db.execute(sql`INSERT INTO writes (id, writer) VALUES (0, 0)`).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(SecureDatabaseError);
      expect(FAILOVER_CODES).toContain((error as SecureDatabaseError).code);
      expect(databaseErrorStatus(error as SecureDatabaseError).status).toBe(503);
    }
    for (const app of apps) {
      const health = await ready(app);
      expect(health.status).toBe(503);
      expect(health.body.error.database.status).toBe('down');
    }
    const returnedAt = performance.now();
    formation.startNode(primary);
    const writers = dbs.map((db) => startContinuousWrites(db, WRITERS));
    const resumed = await Promise.all(writers.map((w) => w.resumedAfter(returnedAt, 30_000)));
    await Promise.all(writers.map((w) => w.stop()));
    reportFigure('pg_auto_failover: both data nodes down, one returns', {
      resumedAfterRestartMs: resumed.includes(undefined) ? null : Math.round(Math.max(...(resumed as number[])) - returnedAt),
    });
    if (resumed.includes(undefined)) throw new Error(`no write succeeded within 30 s of the node's return\n${formation.logTails(30)}`);
    for (const app of apps) expect((await ready(app)).status).toBe(200);
  }, 60_000);
});
