import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { performance } from 'node:perf_hooks';
import { DatabaseService, SecureDatabaseModule, type SecureDatabaseModuleOptions } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { LogCapture } from '../support/log-capture.js';

export interface CredentialsApp {
  app: INestApplication;
  db: DatabasePool;
  service: DatabaseService;
  /** Every line the module logged, from the pool's construction on. */
  logs: LogCapture;
  close(): Promise<void>;
}

/** A Nest app with SecureDatabaseModule.forRoot(options), initialised (startup connection done), its logs captured. */
export async function startCredentialsApp(options: SecureDatabaseModuleOptions, logs = new LogCapture()): Promise<CredentialsApp> {
  const moduleRef = await Test.createTestingModule({ imports: [SecureDatabaseModule.forRoot(options)] })
    .setLogger(logs)
    .compile();
  const app = moduleRef.createNestApplication({ logger: logs });
  await app.init();
  return { app, db: app.get(getDatabasePoolToken()), service: app.get(DatabaseService), logs, close: () => app.close() };
}

/** The error startup fails with, how long it took, and what was logged; a test failure if it starts. */
export async function failedStartup(options: SecureDatabaseModuleOptions): Promise<{ error: Error; ms: number; logs: LogCapture }> {
  const logs = new LogCapture();
  const started = performance.now();
  try {
    const app = await startCredentialsApp(options, logs);
    await app.close();
  } catch (error) {
    return { error: error as Error, ms: performance.now() - started, logs };
  }
  throw new Error('expected startup to fail');
}

/** Everything an error could show to a log or a caller: message, stack, and its causes (enumerable fields too). */
export function everythingShown(error: unknown, logs?: LogCapture): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(e instanceof Error ? `${e.message}\n${e.stack}` : '', JSON.stringify(e) ?? '');
  }
  if (logs) parts.push(logs.text());
  return parts.join('\n');
}
