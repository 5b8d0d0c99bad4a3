import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import { DatabaseObserver } from './database-observer.js';
import { PoolMetrics, type PoolGauges, appMeterProvider, meterOf } from './database-metrics.js';
import type { QueryEventHook } from './query-event.js';
import { SlowQueryLog } from './slow-query-log.js';

/** The pool as observability sees it: its config, its gauges, and the slot the statement path reads. */
interface ObservablePool extends PoolGauges {
  readonly config: ResolvedDatabaseConfig;
  readonly direct?: ObservablePool;
  observer?: DatabaseObserver;
}

interface WarnLogger {
  warn(message: string): void;
}

/** The name a pool reports under: its connection's name (`default` for the unnamed one; DATABASE_DIRECT_URL's pool is `direct`, or `<name>-direct`). */
export function poolNameOf(config: ResolvedDatabaseConfig): string {
  return config.name ?? 'default';
}

/**
 * Gives `db` (and its DATABASE_DIRECT_URL pool) an observer when something listens: the onQuery hook,
 * DATABASE_SLOW_QUERY_MS, or a meter provider (with DATABASE_METRICS on). Otherwise `db.observer`
 * stays undefined and the statement path pays one property read per statement.
 */
export async function observeDatabase(
  db: ObservablePool,
  options: { onQuery?: QueryEventHook; meterProvider?: unknown },
  logger: WarnLogger,
): Promise<void> {
  const { observability, verboseErrors } = db.config;
  const provider = observability.metrics ? await appMeterProvider(options.meterProvider) : undefined;
  const meter = provider && meterOf(provider);
  for (const pool of [db, db.direct]) {
    if (!pool) continue;
    if (!options.onQuery && observability.slowQueryMs === undefined && !meter) continue;
    const { config } = pool;
    const metrics =
      meter &&
      new PoolMetrics(meter, { poolName: poolNameOf(config), database: config.target.database, host: config.target.host, port: config.target.port, max: config.pool.max }, pool);
    const slow = observability.slowQueryMs === undefined ? undefined : new SlowQueryLog(observability.slowQueryMs, logger, verboseErrors);
    pool.observer = new DatabaseObserver(poolNameOf(config), config.topology.readOnly, logger, options.onQuery, slow, metrics);
  }
}
