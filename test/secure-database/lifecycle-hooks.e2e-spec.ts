import { describe, expect, it } from '@jest/globals';
import { Inject, Injectable, type BeforeApplicationShutdown } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { AuthenticationError, DatabaseHealthIndicator, DatabaseService, SecureDatabaseModule, ShuttingDownError } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { harness } from '../support/harness.js';

const h = harness();

/** Nest calls beforeApplicationShutdown after every onModuleDestroy and before the HTTP server closes. */
@Injectable()
class ShutdownWitness implements BeforeApplicationShutdown {
  seen?: { health: unknown; query: unknown; closed: boolean };

  constructor(
    private readonly db: DatabaseService,
    private readonly health: DatabaseHealthIndicator,
    @Inject(getDatabasePoolToken()) private readonly pool: DatabasePool,
  ) {}

  async beforeApplicationShutdown(): Promise<void> {
    this.seen = {
      health: await this.health.pingCheck('database'),
      query: await this.db.fetchval<number>('SELECT 42'),
      closed: this.pool.closed,
    };
  }
}

async function compileApp(url: string) {
  const moduleRef = await Test.createTestingModule({
    imports: [TerminusModule, SecureDatabaseModule.forRoot({ url, sslRootCert: h.caPem, startupRetries: 0 })],
    providers: [DatabaseHealthIndicator, ShutdownWitness],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  return { app, db: app.get<DatabasePool>(getDatabasePoolToken()) };
}

describe('lifecycle hooks: onModuleInit connects, onModuleDestroy begins shutdown, onApplicationShutdown drains', () => {
  it('building the module opens no connection; onModuleInit opens the first one and asserts its TLS', async () => {
    const { app, db } = await compileApp(h.tls.url());
    try {
      expect(db.stats()).toMatchObject({ total: 0, tlsAssertionsPassed: 0 });
      await app.init();
      expect(db.stats()).toMatchObject({ total: 1, tlsAssertionsPassed: 1, tlsAssertionsFailed: 0 });
      expect(db.lastTls).toMatchObject({ ssl: true, verified: true });
    } finally {
      await app.close();
    }
  });

  it('a database that refuses the app fails init (so listen never happens), not the module build', async () => {
    const { app, db } = await compileApp(h.tls.url({}, { password: 'not-the-password' }));
    await expect(app.init()).rejects.toBeInstanceOf(AuthenticationError);
    expect(db.closed).toBe(true);
  });

  it('between onModuleDestroy and onApplicationShutdown readiness says shutting down while queries are still served; then new work is refused', async () => {
    const { app, db } = await compileApp(h.tls.url());
    await app.init();
    const witness = app.get(ShutdownWitness);
    await app.close();
    expect(witness.seen).toEqual({
      health: { database: { status: 'down', message: 'shutting down', code: 'DB_SHUTTING_DOWN', pool: expect.any(Object) } },
      query: 42,
      closed: false,
    });
    expect(db.closed).toBe(true);
    await expect(db.acquire()).rejects.toBeInstanceOf(ShuttingDownError);
  });
});
