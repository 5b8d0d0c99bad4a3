import type { INestApplication, LoggerService } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { harness, scratchDatabase } from '../support/harness.js';

export interface DemoApp {
  app: INestApplication;
  /** Closes the app, drops its scratch database and restores process.env. */
  close(): Promise<void>;
}

/**
 * The demo's AppModule on a scratch database of the TLS cluster, configured through the environment as
 * in production (APP_ENV=production, verify-full against the harness CA), plus `env`.
 */
export async function startDemoOnScratch(env: Record<string, string>, logger: LoggerService): Promise<DemoApp> {
  const h = harness();
  const saved = { ...process.env };
  const scratch = await scratchDatabase(h.tls);
  let app: INestApplication | undefined;
  const close = async () => {
    await app?.close();
    await scratch.drop();
    process.env = saved;
  };
  try {
    Object.assign(process.env, { APP_ENV: 'production', DATABASE_URL: scratch.cluster.url({}, { host: 'localhost' }), DATABASE_SSL_ROOT_CERT: h.caPem, ...env });
    const { AppModule } = await import('../../src/demo/app.module.js');
    const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
    app = await moduleRef.createNestApplication({ logger }).init();
    return { app, close };
  } catch (error) {
    await close();
    throw error;
  }
}
