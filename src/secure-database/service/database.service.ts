import type pg from 'pg';
import type { DatabasePool, DatabasePoolStats } from '../pool/database-pool.js';

/**
 * The injectable query API of one connection. Constructed by the module (not by Nest's class
 * injection), so named connections each get their own.
 */
export class DatabaseService {
  constructor(private readonly db: DatabasePool) {}

  /** The raw pg.Pool, for what this service does not offer. */
  get pool(): pg.Pool {
    return this.db.pool;
  }

  /** Pool counters and TLS assertion counts. */
  stats(): DatabasePoolStats {
    return this.db.stats();
  }
}
