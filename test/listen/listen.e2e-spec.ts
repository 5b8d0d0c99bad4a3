import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { dirname, join } from 'node:path';
import type { ModuleRef } from '@nestjs/core';
import { HealthIndicatorService } from '@nestjs/terminus';
import pg from 'pg';
import { InvalidQueryError, ListenerHealthIndicator, type Notification, SessionUnavailableError, type ListenerReconnected } from '../../src/index.js';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { type Pgbouncer, startPgbouncer } from '../support/pgbouncer.js';
import { type PrivateCluster, startPrivateCluster } from '../support/private-cluster.js';
import { type ServiceFixture, deferred } from '../service/service-fixture.js';
import { directTarget } from '../service/transaction-targets.js';

/** Notifications as they arrive, and a wait for the next one matching a condition (a real event, never a sleep). */
class Inbox {
  readonly received: Notification[] = [];
  private waiters: Array<{ match(n: Notification): boolean; resolve(n: Notification): void }> = [];

  readonly handler = (notification: Notification): void => {
    this.received.push(notification);
    this.waiters = this.waiters.filter((w) => !(w.match(notification) && (w.resolve(notification), true)));
  };

  next(match: (n: Notification) => boolean): Promise<Notification> {
    const seen = this.received.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  payloads(channel: string): string[] {
    return this.received.filter((n) => n.channel === channel).map((n) => n.payload);
  }
}

/** The backend pid of the module's listener connection: the one session of `database` whose last statement was a LISTEN. */
async function listenerPid(cluster: LocalPostgresCluster): Promise<number> {
  return cluster.withSuperuser(async (admin) => {
    for (;;) {
      const { rows } = await admin.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'LISTEN %'", [cluster.facts.database]);
      if (rows.length === 1) return rows[0].pid;
      await new Promise((resolve) => setImmediate(resolve));
    }
  });
}

describe('listen / notify on the TLS cluster (pipelining on, statement cache on)', () => {
  const target = directTarget();
  let f: ServiceFixture;

  beforeAll(async () => {
    f = await target.start({ poolMax: 3 });
  });
  afterAll(() => f?.close());

  it('delivers bound payloads on exactly named channels; unsubscribe stops a handler and UNLISTENs the channel', async () => {
    const inbox = new Inbox();
    const weird = 'Mixed Case "quoted"; DROP TABLE x --';
    const payload = 'tab\t newline\n quote\' "double" \\ é 🎉 $1';
    const a = await f.db.listen(weird, inbox.handler);
    const b = await f.db.listen('plain', inbox.handler);
    await f.db.notify(weird, payload);
    expect(await inbox.next((n) => n.channel === weird)).toMatchObject({ channel: weird, payload });
    await f.db.notify('PLAIN', 'other case: another channel');
    await f.db.notify('plain');
    expect(await inbox.next((n) => n.channel === 'plain')).toMatchObject({ payload: '' });
    expect(inbox.received.some((n) => n.channel === 'PLAIN')).toBe(false);

    await a.unsubscribe();
    await a.unsubscribe(); // idempotent
    await f.db.notify(weird, 'after unsubscribe');
    await f.db.notify('plain', 'marker');
    await inbox.next((n) => n.payload === 'marker'); // sent after, by the same session: delivered in order
    expect(inbox.payloads(weird)).toEqual([payload]);
    const channels = await f.cluster.withSuperuser(async () => f.db.stats().listener);
    expect(channels).toMatchObject({ state: 'listening', channels: 1 });
    await b.unsubscribe();
  });

  it('a handler that throws or rejects never stops the listener, nor the other handlers', async () => {
    const inbox = new Inbox();
    const throwing = await f.db.listen('jobs', () => {
      throw new Error('handler bug');
    });
    const rejecting = await f.db.listen('jobs', async () => Promise.reject(new Error('async handler bug')));
    const good = await f.db.listen('jobs', inbox.handler);
    await f.db.notify('jobs', 'one');
    await f.db.notify('jobs', 'two');
    await inbox.next((n) => n.payload === 'two');
    expect(inbox.payloads('jobs')).toEqual(['one', 'two']);
    await Promise.all([throwing, rejecting, good].map((s) => s.unsubscribe()));
  });

  it('notify checks the payload limit (7999 bytes) and channel names with a clear error; inside a transaction it is sent at COMMIT only', async () => {
    const inbox = new Inbox();
    const sub = await f.db.listen('limits', inbox.handler);
    const largest = 'é'.repeat(3999) + 'x'; // 7999 bytes
    await f.db.notify('limits', largest);
    expect((await inbox.next(() => true)).payload).toBe(largest);
    const tooLarge = await f.db.notify('limits', largest + 'x').catch((e: unknown) => e);
    expect(tooLarge).toBeInstanceOf(InvalidQueryError);
    expect((tooLarge as Error).message).toMatch(/at most 7999 bytes.*8000/);
    await expect(f.db.notify('', 'x')).rejects.toBeInstanceOf(InvalidQueryError);
    await expect(f.db.notify('c'.repeat(64), 'x')).rejects.toBeInstanceOf(InvalidQueryError);
    await expect(f.db.listen('c'.repeat(64), inbox.handler)).rejects.toBeInstanceOf(InvalidQueryError);

    await f.db.transaction(async () => {
      await f.db.notify('limits', 'rolled back');
      throw new Error('roll back');
    }).catch(() => undefined);
    await f.db.transaction(async (tx) => {
      await f.db.notify('limits', 'committed');
      await tx.fetchval('SELECT 1');
    });
    await inbox.next((n) => n.payload === 'committed');
    expect(inbox.payloads('limits')).toEqual([largest, 'committed']);
    await sub.unsubscribe();
  });

  it('pg_terminate_backend of the listener: reconnected and resubscribed within 2 s, the signal emitted, later notifications delivered once', async () => {
    const inbox = new Inbox();
    const reconnected = deferred<ListenerReconnected>();
    const sub = await f.db.listen('survivor', inbox.handler, { onReconnect: (event) => reconnected.resolve(event) });
    await f.db.notify('survivor', 'before');
    await inbox.next((n) => n.payload === 'before');
    const before = f.db.stats().listener!.reconnects;

    const pid = await listenerPid(f.cluster);
    const killedAt = performance.now();
    await f.cluster.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [pid]));
    const event = await reconnected.promise;
    const tookMs = performance.now() - killedAt;
    expect(event).toMatchObject({ channel: 'survivor' });
    expect(tookMs).toBeLessThan(2000);
    expect(f.db.stats().listener).toMatchObject({ state: 'listening', reconnects: before + 1 });
    expect(await listenerPid(f.cluster)).not.toBe(pid);

    for (const n of ['after-1', 'after-2', 'after-3']) await f.db.notify('survivor', n);
    await inbox.next((n) => n.payload === 'after-3');
    expect(inbox.payloads('survivor')).toEqual(['before', 'after-1', 'after-2', 'after-3']);

    const health = new ListenerHealthIndicator(f.moduleRef as unknown as ModuleRef, new HealthIndicatorService()).isListening('notifications');
    expect(health).toEqual({ notifications: { status: 'up', state: 'listening', channels: 1, reconnects: before + 1 } });
    await sub.unsubscribe();
  });
});

describe('listen across a server restart (a private cluster)', () => {
  let server: PrivateCluster;
  let f: ServiceFixture;

  beforeAll(async () => {
    server = await startPrivateCluster();
    f = await directTarget().start({ url: server.cluster.url(), sslRootCert: server.caPem, poolMax: 2 });
  }, 120_000);
  afterAll(async () => {
    await f?.close().catch(() => undefined);
    await server?.stop();
  });

  it('the listener comes back after the server restarts, signals, and receives again', async () => {
    const inbox = new Inbox();
    const reconnected = deferred<ListenerReconnected>();
    await f.db.listen('restart', inbox.handler, { onReconnect: (event) => reconnected.resolve(event) });
    await server.cluster.restart('fast');
    const event = await reconnected.promise;
    expect(event.channel).toBe('restart');
    await f.db.notify('restart', 'after restart');
    await inbox.next((n) => n.payload === 'after restart');
    expect(inbox.payloads('restart')).toEqual(['after restart']);
  }, 60_000);
});

describe('listen behind a transaction pooler', () => {
  const h = harness();
  const ca = { certPath: h.caPath, keyPath: join(dirname(h.caPath), 'local-postgres-ca.key') };
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let bouncer: Pgbouncer;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    bouncer = await startPgbouncer({ upstream: scratch.cluster, ca, poolSize: 3 });
  }, 120_000);
  afterAll(async () => {
    await bouncer?.stop();
    await scratch?.drop();
  });

  it('without DATABASE_DIRECT_URL listen is refused (DB_SESSION_UNAVAILABLE saying what to set); notify goes through the pooler', async () => {
    const f = await directTarget().start({ url: bouncer.url(), pooler: 'transaction' });
    try {
      const refused = await f.db.listen('pooled', () => undefined).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(SessionUnavailableError);
      expect((refused as Error).message).toContain('DATABASE_DIRECT_URL');
      // A plain pg client listening directly sees what notify sent through PgBouncer.
      const direct = new pg.Client({ connectionString: scratch.cluster.url(), ssl: { ca: h.caPem } });
      await direct.connect();
      try {
        await direct.query('LISTEN pooled');
        const got = new Promise<pg.Notification>((resolve) => direct.once('notification', resolve));
        await f.db.notify('pooled', 'through the pooler');
        expect((await got).payload).toBe('through the pooler');
      } finally {
        await direct.end();
      }
    } finally {
      await f.close();
    }
  });

  it('with DATABASE_DIRECT_URL the listener connection goes there (TLS asserted), and receives what notify sends through the pooler', async () => {
    const f = await directTarget().start({ url: bouncer.url(), directUrl: scratch.cluster.url(), pooler: 'transaction' });
    try {
      const inbox = new Inbox();
      await f.db.listen('routed', inbox.handler);
      await f.db.notify('routed', 'hello');
      expect((await inbox.next(() => true)).payload).toBe('hello');
      const viaTls = await scratch.cluster.withSuperuser(async (admin) =>
        (await admin.query("SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.query LIKE 'LISTEN %'", [scratch.cluster.facts.database])).rows,
      );
      expect(viaTls).toEqual([{ ssl: true }]);
    } finally {
      await f.close();
    }
  });
});
