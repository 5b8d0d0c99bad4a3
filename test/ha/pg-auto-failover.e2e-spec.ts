import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DatabaseService, SecureDatabaseError, TlsVerificationError, databaseErrorStatus, sql } from '../../src/index.js';
import type { SecureDatabaseModuleOptions } from '../../src/secure-database/interfaces/secure-database-options.interface.js';
import { createHealthApp } from '../health/health-app.js';
import { reportFigure } from '../resilience/figures.js';
import { type ContinuousWrites, startContinuousWrites, writeFigures } from '../support/continuous-writes.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';
import { type Formation, type FormationNode, MONITOR_SETTINGS, startFormation } from '../support/pg-auto-failover.js';

/** Per app: two apps write at once, one with the statement cache (the default), one pipelined. */
const WRITERS = 2;
/** Errors a failover explains, each a fast, sanitized 503 for the caller. */
const FAILOVER_CODES = ['DB_CONNECTION_FAILED', 'DB_CONNECT_TIMEOUT', 'DB_SERVER_ROLE_MISMATCH', 'DB_READ_ONLY'];

/**
 * pg_auto_failover 2.0 (Debian's, on its PostgreSQL 15): a monitor and three data nodes
 * (number_sync_standbys 1: every commit waits for a standby), each with a certificate naming only
 * its own host. The apps run on the URL `pg_autoctl show uri` hands out
 * (two hosts, target_session_attrs=read-write, sslmode=verify-full, sslrootcert) with the app's
 * credentials added, and write continuously while the engine fails over: planned, after the
 * primary's postgres is killed, and after the primary's whole node is killed. Then the bad input:
 * a host whose certificate names another host, the monitor down, every data node down.
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
    // Measured from the end of the fault (the node gone, `perform failover` returned): a write started
    // a moment earlier may still commit on the old primary.
    const resumed = await Promise.all(writers.map((w) => w.resumedAfter(faultDoneAt, resumeWithinMs)));
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

  it('the URL pg_autoctl hands out: every host, read-write, verify-full; the apps land on the primary over verified TLS', async () => {
    const uri = await formation.formationUri();
    const [n1] = formation.nodes;
    expect(uri).toContain(`//${formation.nodes.map((n) => `${n.host}:${n.port}`).join(',')}/`);
    expect(uri).toMatch(/target_session_attrs=read-write/);
    expect(uri).toMatch(/sslmode=verify-full/);
    for (const app of apps) {
      const health = await ready(app);
      expect(health.status).toBe(200);
      expect(health.body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${n1.host}:${n1.port}` });
    }
  });

  it('(a) planned `pg_autoctl perform failover` under writes: 0 acknowledged writes lost, old connections evicted, new ones verified against the new primary', async () => {
    const old = await formation.settled();
    await waitForSyncStandby(old);
    const run = await underWrites(() => formation.performFailover(), 15_000);
    const primary = await formation.settled();
    const figures = writeFigures(run.attempts, run.faultDoneAt, run.resumedAt, await idsOn(primary));
    reportFigure('pg_auto_failover: planned failover', { ...figures, performFailoverMs: Math.round(run.faultDoneAt - run.faultAt) });
    expectCleanFailover(run, figures);
    expect(primary).not.toBe(old);
    // Each host verified against its own name: the new primary's certificate names only its own address.
    for (const app of apps) expect((await ready(app)).body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${primary.host}:${primary.port}` });
    // With the old primary back as a standby, a fresh app's connections pass it over for the new primary.
    await formation.waitForStates({ [old.name]: 'secondary' });
    const fresh = await startDatabaseApp(appOptions());
    try {
      await fresh.app.get(DatabaseService).execute(sql`INSERT INTO writes (id, writer) VALUES (-1, -1)`);
    } finally {
      await fresh.close();
    }
  }, 60_000);

  it('a host whose certificate names another host is refused with the TLS error that says so, not skipped as "no primary"', async () => {
    const primary = await formation.settled();
    // The primary reached as localhost: its certificate names only its own address. The others are standbys.
    const misnamed = url.replace(`${primary.host}:${primary.port}`, `localhost:${primary.port}`);
    expect(misnamed).toContain(`localhost:${primary.port}`);
    const error = await startupError(appOptions({ url: misnamed, startupRetries: 0 }));
    expect(error).toBeInstanceOf(TlsVerificationError);
    expect(error.message).toContain('does not name this host');
    expect(error.message).not.toContain(formation.app.password);
  }, 30_000);

  it("(b) the primary's postgres SIGKILLed: its keeper restarts it in place (no failover), 0 acknowledged writes lost", async () => {
    const primary = await formation.settled();
    await waitForSyncStandby(primary);
    const run = await underWrites(() => formation.killPostmaster(primary), 15_000);
    const figures = writeFigures(run.attempts, run.faultDoneAt, run.resumedAt, await idsOn(primary));
    reportFigure("pg_auto_failover: primary's postgres killed", figures);
    expectCleanFailover(run, figures);
    expect(await formation.settled()).toBe(primary);
  }, 60_000);

  it("(b') the primary's node killed (pg_autoctl and postgres): the monitor promotes a standby by itself, 0 acknowledged writes lost", async () => {
    const old = await formation.settled();
    await waitForSyncStandby(old);
    const run = await underWrites(() => formation.crashNode(old), 30_000);
    const primary = await formation.settled();
    const figures = writeFigures(run.attempts, run.faultDoneAt, run.resumedAt, await idsOn(primary));
    reportFigure("pg_auto_failover: primary's node killed", {
      ...figures,
      unhealthyAfterMs: MONITOR_SETTINGS['pgautofailover.node_considered_unhealthy_timeout'],
      primaryDemoteTimeoutMs: MONITOR_SETTINGS['pgautofailover.primary_demote_timeout'],
    });
    expectCleanFailover(run, figures);
    expect(primary).not.toBe(old);
    expect((await ready()).body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `${primary.host}:${primary.port}` });
    // The killed node comes back as a standby (pg_rewind): with number_sync_standbys 1, a failover
    // needs two standbys to report, so the later cases need all three nodes.
    formation.startNode(old);
    await formation.waitForStates({ [old.name]: 'secondary' }, 60_000);
  }, 120_000);

  it('the monitor down: the apps keep writing on the current primary, without a failed request', async () => {
    await formation.crashMonitor();
    const downAt = performance.now();
    const writers = dbs.map((db) => startContinuousWrites(db, WRITERS));
    await Promise.all(writers.map((w) => w.succeededAfter(downAt, 100, 10_000)));
    await Promise.all(writers.map((w) => w.stop()));
    const attempts = writers.flatMap((w) => w.attempts);
    expect(attempts.filter((a) => a.code)).toEqual([]);
    expect((await ready()).status).toBe(200);
    const restartAt = performance.now();
    await formation.startMonitor();
    reportFigure('pg_auto_failover: monitor down', {
      writes: attempts.length,
      failedWrites: attempts.filter((a) => a.code).length,
      monitorRestartMs: Math.round(performance.now() - restartAt),
    });
  }, 60_000);

  it('every data node down: 503s and health down; the apps recover when the nodes return', async () => {
    expect(formation.nodes.every((n) => n.running)).toBe(true);
    await Promise.all(formation.nodes.map((node) => formation.stopNode(node)));
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
    for (const node of formation.nodes) formation.startNode(node);
    const writers = dbs.map((db) => startContinuousWrites(db, WRITERS));
    const resumed = await Promise.all(writers.map((w) => w.resumedAfter(returnedAt, 45_000)));
    await Promise.all(writers.map((w) => w.stop()));
    reportFigure('pg_auto_failover: every data node down, then back', {
      resumedAfterRestartMs: resumed.includes(undefined) ? null : Math.round(Math.max(...(resumed as number[])) - returnedAt),
    });
    if (resumed.includes(undefined)) throw new Error(`no write succeeded within 45 s of the nodes' return; states ${JSON.stringify(await formation.states())}\n${formation.logTails(40)}`);
    for (const app of apps) expect((await ready(app)).status).toBe(200);
  }, 90_000);
});
