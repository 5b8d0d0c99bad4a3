import { expect } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalPostgresCluster, freePort } from '../../src/local-postgres/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { type DemoProcess, spawnDemo } from '../support/demo-process.js';
import type { LogCapture } from '../support/log-capture.js';

export interface DemoSettings {
  env: Record<string, string>;
  /** The demo's application_name: finds its backends in pg_stat_activity. */
  applicationName: string;
}

/**
 * The demo in production mode against `cluster` (a throughProxy handle works too), configured only
 * through DATABASE_* variables, with an application_name of its own. `settings` adds or overrides variables.
 */
export function productionEnv(cluster: LocalPostgresCluster, caPem: string, scenario: string, settings: Record<string, string> = {}): DemoSettings {
  const applicationName = `resilience-${scenario}-${randomBytes(3).toString('hex')}`;
  return {
    applicationName,
    env: { APP_ENV: 'production', DATABASE_URL: cluster.url(), DATABASE_SSL_ROOT_CERT: caPem, DATABASE_APPLICATION_NAME: applicationName, ...settings },
  };
}

/** The built demo as a child process, once it listens. */
export async function startDemoProcess(env: Record<string, string>): Promise<DemoProcess> {
  const demo = spawnDemo(env, await freePort());
  await demo.waitFor(/Listening on/, 30_000);
  return demo;
}

/** Still running (so nothing crashed it, and no unhandled rejection: Node ends the process on one), and answering. */
export async function expectAlive(demo: DemoProcess): Promise<void> {
  expect({ code: demo.child.exitCode, signal: demo.child.signalCode }).toEqual({ code: null, signal: null });
  expect((await fetch(demo.url('/health/live'))).status).toBe(200);
  expect(demo.output()).not.toMatch(/unhandled|uncaught/i);
}

/** For afterAll: SIGTERM, then SIGKILL if it has not exited after 15 s. */
export async function stopDemoProcess(demo: Pick<DemoProcess, 'child' | 'exited'> | undefined): Promise<void> {
  if (!demo || demo.child.exitCode !== null || demo.child.signalCode !== null) return;
  demo.child.kill('SIGTERM');
  if (!(await Promise.race([demo.exited.then(() => true), sleep(15_000, false, { ref: false })]))) demo.child.kill('SIGKILL');
  await demo.exited;
}

export interface InProcessDemo {
  app: INestApplication;
  baseUrl: string;
  /** The module's pool: its stats() show leaked clients. */
  db: DatabasePool;
}

/**
 * The demo's AppModule in this process, listening on a loopback port, configured through the
 * environment exactly as in production. Only once per spec file: ConfigModule reads the environment
 * when its module loads.
 */
export async function startDemoInProcess(env: Record<string, string>, logs: LogCapture): Promise<InProcessDemo> {
  Object.assign(process.env, env);
  const { AppModule } = await import('../../src/demo/app.module.js');
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  const app = moduleRef.createNestApplication({ logger: logs });
  await app.listen(0, '127.0.0.1');
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, baseUrl: `http://127.0.0.1:${port}`, db: app.get<DatabasePool>(getDatabasePoolToken(), { strict: false }) };
}
