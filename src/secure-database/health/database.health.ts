import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type pg from 'pg';
import { isConnectionUnusable } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { REPLICATION_STATUS_SQL, type ReplicationStatus, replicationStatus } from '../replica/replication-status.js';
import { getDatabasePoolToken } from '../secure-database.utils.js';
import { daysLeft } from '../tls/certificate-expiry.js';
import { TimeoutError, promiseTimeout } from '../utils/promise-timeout.js';
import { downReason } from './database-health-reason.js';

export interface DatabasePingOptions {
  /** The whole budget: waiting for a pooled connection plus the query. Default 1000. */
  timeoutMs?: number;
  /** A named connection; the default connection when omitted. */
  connection?: string;
}


/**
 * Terminus health indicator for a SecureDatabaseModule connection. List it in the providers of a
 * module that imports TerminusModule, and use it for READINESS only:
 *
 *   @Get('health/live')  @HealthCheck() live()  { return this.health.check([]); }
 *   @Get('health/ready') @HealthCheck() ready() { return this.health.check([() => this.db.pingCheck('database')]); }
 *
 * Liveness must not touch the database: a database outage would make the orchestrator restart every
 * instance, which cures nothing and adds a reconnect storm. Readiness fails instead, so traffic goes
 * elsewhere until the database answers again.
 *
 * `up` carries the TLS facts (active, protocol, sslmode, whether chain and host name were verified;
 * behind a pooler `tls` is the client-to-pooler leg and `serverLegTls` the pooler-to-server one;
 * `certificateDaysLeft`, whole days before the first certificate of the presented chain expires), the
 * server's role (`primary` or `standby`, with `replicationLagSeconds` on a standby), the server version
 * and, from a host list, the host (both in full only in development), pool counters and the latency.
 * Check each connection by name (`connection: 'replica'`) under a key of its own. `down` a short
 * fixed reason (`timeout`, `connection refused`, `pool exhausted`, `ssl not active`, `authentication
 * failed`, `shutting down`, …) and the library's error code, never a driver message, password or host
 * detail. From onModuleDestroy on it reports `shutting down` without touching the pool.
 * It answers within `timeoutMs` whatever the database does; a connection that arrives after the
 * deadline goes straight back to the pool, and one whose ping timed out is destroyed, not reused.
 * Concurrent checks of one connection share one ping: a flood of checks while the pool is saturated
 * queues one acquire, not one each (an acquire cannot be withdrawn from pg's queue, so a check that
 * timed out would otherwise leave its own behind for up to the acquire timeout). A check arriving
 * while that acquire is still queued, even after every earlier check answered, joins it.
 */
@Injectable()
export class DatabaseHealthIndicator {
  private readonly pools = new Map<string, DatabasePool>();
  /** The ping in progress on each pool, shared by every check that arrives before it settles. */
  private readonly pings = new WeakMap<DatabasePool, SharedPing>();

  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly health: HealthIndicatorService,
  ) {}

  async pingCheck<const Key extends string>(key: Key, options: DatabasePingOptions = {}): Promise<HealthIndicatorResult<Key>> {
    const { timeoutMs = 1000, connection } = options;
    const indicator = this.health.check(key);
    const db = this.findPool(connection);
    if (!db) return indicator.down({ message: 'connection not registered' });
    // Shutdown has begun: take this instance out of rotation before its pool refuses work.
    if (db.shuttingDown) return indicator.down({ message: 'shutting down', code: 'DB_SHUTTING_DOWN', pool: poolCounters(db) });

    const { total, idle, waiting } = db.stats();
    // Asked while every slot was taken: a timeout then means we waited in the pool's queue.
    const queued = waiting > 0 || (total >= db.config.pool.max && idle === 0);
    const started = performance.now();
    let shared = this.pings.get(db);
    if (!shared) {
      const fresh = (shared = new SharedPing(db));
      this.pings.set(db, fresh);
      const settled = () => {
        if (this.pings.get(db) === fresh) this.pings.delete(db);
      };
      fresh.result.then(settled, settled);
    }
    const progress = shared.progress;
    try {
      const { status, server } = await shared.join(timeoutMs);
      const tls = db.lastTls;
      const pooled = db.config.pooler.mode !== 'none';
      return indicator.up({
        tls: pooled ? tls?.clientLeg.encrypted === true : tls?.ssl === true,
        tlsProtocol: pooled ? tls?.clientLeg.protocol : tls?.protocol,
        sslmode: db.config.tls.mode,
        serverIdentityVerified: tls?.verified === true && db.config.tls.verifiesHostname,
        // Whole days before the first certificate of the server's chain expires: alert well before 0.
        certificateDaysLeft: db.lastCertificate && daysLeft(db.lastCertificate.validTo),
        ...(pooled ? { pooler: db.config.pooler.mode, serverLegTls: tls?.ssl === true, serverLegTlsProtocol: tls?.protocol } : {}),
        role: status.role,
        ...(status.role === 'standby' ? { replicationLagSeconds: status.lagSeconds } : {}),
        ...(db.config.verboseErrors && db.config.target.hosts.length > 1 && server ? { host: `${server.host}:${server.port}` } : {}),
        serverVersion: serverVersion(db),
        latencyMs: Math.round(performance.now() - started),
        pool: poolCounters(db),
      });
    } catch (error) {
      const latencyMs = Math.round(performance.now() - started);
      if (error instanceof TimeoutError) {
        return indicator.down({ message: queued && !progress.acquired ? 'pool exhausted' : 'timeout', latencyMs, pool: poolCounters(db) });
      }
      const mapped = db.mapError(error);
      return indicator.down({ message: downReason(mapped), code: mapped.code, latencyMs, pool: poolCounters(db) });
    }
  }

  private findPool(name?: string): DatabasePool | undefined {
    const token = getDatabasePoolToken(name);
    let db = this.pools.get(token);
    if (!db) {
      try {
        db = this.moduleRef.get<DatabasePool>(token, { strict: false });
      } catch {
        return undefined;
      }
      this.pools.set(token, db);
    }
    return db;
  }
}

/** The exact build in development; the major version alone in production (health endpoints are often public). */
function serverVersion(db: DatabasePool): string | undefined {
  const full = db.lastTls?.serverVersion;
  return db.config.verboseErrors ? full : full?.match(/^\d+/)?.[0];
}

/** With pipelining on, also how deep the deepest pipeline is now (statements in flight on one connection). */
function poolCounters(db: DatabasePool): { total: number; idle: number; waiting: number; pipelineDepth?: number } {
  const { total, idle, waiting, pipeline } = db.stats();
  return { total, idle, waiting, ...(pipeline ? { pipelineDepth: pipeline.depth } : {}) };
}

/**
 * Acquire + one small query (the server's role and replication lag), awaited by every check that joins
 * before it settles, each under its own deadline. Once no check waits any more, a connection still on
 * its way is released on arrival (never leaked, never left holding a slot), and one stuck in the ping
 * is destroyed: its state is unknown, and a blackholed socket would otherwise hold the slot until the
 * client-side query timeout.
 */
class SharedPing {
  readonly progress = { acquired: false };
  readonly result: Promise<{ status: ReplicationStatus; server?: { host: string; port: number } }>;
  private waiting = 0;
  private pinging: pg.PoolClient | undefined;

  constructor(private readonly db: DatabasePool) {
    this.result = this.run();
    this.result.catch(() => undefined); // each check sees the outcome through join(); none may be left unhandled
  }

  join(timeoutMs: number): Promise<{ status: ReplicationStatus; server?: { host: string; port: number } }> {
    this.waiting++;
    let left = false;
    const leave = () => {
      if (!left) this.waiting--;
      left = true;
    };
    return promiseTimeout(timeoutMs, this.result, () => {
      leave();
      if (this.waiting === 0 && this.pinging) {
        this.db.markUnusable(this.pinging);
        (this.pinging as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      }
    }).finally(leave);
  }

  private async run(): Promise<{ status: ReplicationStatus; server?: { host: string; port: number } }> {
    const client = await this.db.acquire();
    if (this.waiting === 0) {
      this.db.release(client);
      return { status: { role: 'primary' as const } };
    }
    this.progress.acquired = true;
    this.pinging = client;
    try {
      const { rows } = await client.query(REPLICATION_STATUS_SQL);
      return { status: replicationStatus(rows[0]), server: { host: (client as pg.Client).host, port: (client as pg.Client).port } };
    } catch (error) {
      if (isConnectionUnusable(error)) this.db.markUnusable(client);
      throw error;
    } finally {
      this.pinging = undefined;
      this.db.release(client);
    }
  }
}
