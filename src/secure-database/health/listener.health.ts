import { Injectable } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { type HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import type { DatabasePool } from '../pool/database-pool.js';
import { getDatabasePoolToken } from '../secure-database.utils.js';

export interface ListenerCheckOptions {
  /** A named connection; the default connection when omitted. */
  connection?: string;
}

/**
 * Terminus indicator for the notification listener of a SecureDatabaseModule connection (db.listen):
 * `up` while its dedicated connection listens (or before the app listened to anything: `state:
 * 'unused'`), `down` with `state: 'reconnecting'` while it is being opened again after a loss, and
 * `closed` from shutdown on. Both carry the channel count and how many times it reconnected. It only
 * reads the listener's state (no query). Put it in readiness when the instance is useless without its
 * notifications; otherwise alert on `reconnects`.
 *
 *   @Get('health/ready') @HealthCheck() ready() { return this.health.check([() => this.listener.isListening('notifications')]); }
 */
@Injectable()
export class ListenerHealthIndicator {
  constructor(
    private readonly moduleRef: ModuleRef,
    private readonly health: HealthIndicatorService,
  ) {}

  isListening<const Key extends string>(key: Key, options: ListenerCheckOptions = {}): HealthIndicatorResult<Key> {
    const indicator = this.health.check(key);
    let db: DatabasePool;
    try {
      db = this.moduleRef.get<DatabasePool>(getDatabasePoolToken(options.connection), { strict: false });
    } catch {
      return indicator.down({ message: 'connection not registered' });
    }
    const listener = db.stats().listener;
    if (!listener) return indicator.up({ state: 'unused' });
    const { state, channels, reconnects } = listener;
    return state === 'listening' || (state === 'connecting' && channels === 0) ? indicator.up({ state, channels, reconnects }) : indicator.down({ state, channels, reconnects });
  }
}
