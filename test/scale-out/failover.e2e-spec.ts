import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { DatabaseService } from '../../src/index.js';
import { createHealthApp } from '../health/health-app.js';
import { ms, reportFigure } from '../resilience/figures.js';
import { startContinuousWrites } from '../support/continuous-writes.js';
import { type ReplicationPair, startReplicationPair } from '../support/replication-pair.js';

const WRITERS = 4;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The app writes continuously through a two-host URL with target_session_attrs=read-write; the
 * primary crashes (immediate stop) and its synchronous standby is promoted. Every write the app was
 * told succeeded must be on the new primary, writes must resume quickly, and no call may hang.
 */
describe('primary failover under continuous writes', () => {
  let pair: ReplicationPair;
  let app: INestApplication;

  beforeAll(async () => {
    pair = await startReplicationPair();
    await pair.primary.withSuperuser(async (admin) => {
      // Synchronous replication: a commit is acknowledged once the standby has it, so a crash of the
      // primary loses no acknowledged write (with asynchronous replication a crash can).
      await admin.query("ALTER SYSTEM SET synchronous_standby_names = '*'");
      await admin.query("ALTER SYSTEM SET synchronous_commit = 'on'");
      await admin.query('SELECT pg_reload_conf()');
    });
    await pair.primary.withSuperuser(async (admin) => {
      for (let i = 0; ; i++) {
        const { rows } = await admin.query("SELECT 1 FROM pg_stat_replication WHERE sync_state = 'sync'");
        if (rows.length) break;
        if (i > 200) throw new Error('the standby never became synchronous');
        await sleep(25);
      }
      await admin.query(`CREATE TABLE writes (id int PRIMARY KEY, writer int NOT NULL); GRANT ALL ON writes TO ${pair.primary.facts.user}`);
    }, pair.primary.facts.database);
    const f = pair.primary.facts;
    const url = `postgresql://${f.user}:${encodeURIComponent(f.password)}@127.0.0.1:${f.port},127.0.0.2:${pair.standby.facts.port}/${f.database}?target_session_attrs=read-write`;
    ({ app } = await createHealthApp([
      { url, sslRootCert: pair.caPem, appEnv: 'test', poolMax: WRITERS, connectTimeoutMs: 1000, acquireTimeoutMs: 2000, statementTimeoutMs: 2000 },
    ]));
  }, 60_000);

  afterAll(async () => {
    await app?.close();
    await pair?.stop();
  });

  it('0 acknowledged writes lost, writes resume within 5 s, nothing hangs, health shows the new primary', async () => {
    const writes = startContinuousWrites(app.get(DatabaseService), WRITERS);
    const { attempts } = writes;

    await sleep(1000);
    await pair.primary.stop('immediate');
    // Measured from here, when the old primary is gone: a write started a moment earlier may still commit on it.
    const crashAt = performance.now();
    await pair.standby.promote();
    const promotedAt = performance.now();
    const resumedAt = await writes.resumedAfter(crashAt, 10_000);
    await sleep(1000);
    const finished = await writes.stop();

    const acknowledged = attempts.filter((a) => !a.code).map((a) => a.id);
    const failed = attempts.filter((a) => a.code);
    const onNewPrimary = await pair.standby.withSuperuser(
      async (admin) => new Set((await admin.query<{ id: number }>('SELECT id FROM writes')).rows.map((r) => r.id)),
      pair.standby.facts.database,
    );
    const lost = acknowledged.filter((id) => !onNewPrimary.has(id));
    const slowest = Math.max(...attempts.map((a) => a.endedAt - a.startedAt));
    const codes = [...new Set(failed.map((a) => a.code))].sort();
    const health = await request(app.getHttpServer()).get('/health/ready');
    // Kept by `npm run resilience` (test/resilience/results/): the README's failover figures come from there.
    reportFigure('primary failover', {
      acknowledgedWrites: acknowledged.length,
      acknowledgedStartedAfterCrash: attempts.filter((a) => !a.code && a.startedAt > crashAt).length,
      lostAcknowledgedWrites: lost.length,
      failedWrites: failed.length,
      failedCodes: codes,
      promotionMs: ms(promotedAt - crashAt),
      resumedAfterPrimaryGoneMs: resumedAt === undefined ? null : ms(resumedAt - crashAt),
      slowestCallMs: ms(slowest),
    });

    expect(finished).toBe(true);
    expect(lost).toEqual([]);
    expect(acknowledged.length).toBeGreaterThan(50);
    expect(resumedAt).toBeDefined();
    expect(resumedAt! - crashAt).toBeLessThan(5000);
    expect(slowest).toBeLessThan(5000);
    // Only the failures a failover explains, each a fast, sanitized 503 for the caller.
    for (const code of codes) expect(['DB_CONNECTION_FAILED', 'DB_CONNECT_TIMEOUT', 'DB_SERVER_ROLE_MISMATCH', 'DB_READ_ONLY']).toContain(code);
    expect(health.status).toBe(200);
    expect(health.body.info.database).toMatchObject({ status: 'up', role: 'primary', host: `127.0.0.2:${pair.standby.facts.port}` });
  }, 60_000);
});
