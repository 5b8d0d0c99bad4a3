import { setTimeout as sleep } from 'node:timers/promises';
import { performance } from 'node:perf_hooks';
import { NestFactory } from '@nestjs/core';
import pg from 'pg';
import { SecureDatabaseModule } from '../../src/index.js';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import type { BenchTarget } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import { median, percentile } from '../support/measure.js';
import { type Report, fixed } from '../support/report.js';

export type ArmKey = 'raw' | 'rawSelect1' | 'module';

export interface ArmResult {
  medianMs: number;
  p90Ms: number;
  /** Server round trips after authentication (ReadyForQuery messages − 1 per new connection), counted in an untimed pass. */
  roundTrips: number;
}

export interface ConnectionCostResult {
  arms: Record<ArmKey, ArmResult>;
  /** Median of the per-sample differences module − raw, in ms. */
  assertionMs: number;
  /** Median of the per-sample differences module − (raw + SELECT 1): what the assertion costs beyond one trivial round trip. */
  beyondRoundTripMs: number;
}

export const ARM_TITLES: Record<ArmKey, string> = {
  raw: 'connect + TLS + auth (pg-pool, same client config)',
  rawSelect1: '… + one SELECT 1 (a trivial first round trip)',
  module: '… + the module TLS assertion instead (DatabasePool.acquire)',
};

interface Arm {
  /** Opens a new physical connection and hands it over ready for queries. */
  open(): Promise<void>;
}

// Lets the previous backend exit before the next connect, so connections are not timed against a dying one's teardown.
const SETTLE_MS = 15;

/**
 * New-connection cost through pg-pool, every arm with one identical per-connection config (the one the
 * module resolved: same TLS options, startup parameters and CA): TCP + TLS handshake + SCRAM + startup;
 * the same plus a trivial first query; the same plus the module's TLS assertion (its onConnect hook).
 * Each sample takes a connection from an empty pool and destroys it.
 */
export async function runConnectionCost(target: BenchTarget, options: BenchOptions, report: Report): Promise<ConnectionCostResult> {
  report.line(`## New-connection cost: ${options.connectSamples} connections per arm, order rotated each sample`);
  const app = await NestFactory.createApplicationContext(
    { imports: [SecureDatabaseModule.forRoot({ url: target.url, sslRootCert: target.caPem, poolMax: 1, appEnv: 'production' })] },
    { logger: ['error'] },
  );
  const db = app.get<DatabasePool>(getDatabasePoolToken());
  const clientConfig = db.config.client; // password is non-enumerable: pass the object itself, never a copy
  class SameConfigClient extends pg.Client {
    constructor() {
      super(clientConfig);
    }
  }
  const rawPool = new pg.Pool({ Client: SameConfigClient, max: 1 });
  rawPool.on('error', () => undefined);
  const arms: Record<ArmKey, Arm> = {
    raw: {
      open: async () => (await rawPool.connect()).release(true),
    },
    rawSelect1: {
      open: async () => {
        const client = await rawPool.connect();
        await client.query('SELECT 1');
        client.release(true);
      },
    },
    module: {
      open: async () => {
        const client = await db.acquire();
        db.markUnusable(client); // released as broken: destroyed, so the next acquire connects anew
        db.release(client);
      },
    },
  };
  try {
    await arms.module.open(); // destroys the startup connection: the module's pool is empty from here on
    await arms.raw.open();
    const keys = Object.keys(arms) as ArmKey[];
    const timings: Record<ArmKey, number[]> = { raw: [], rawSelect1: [], module: [] };
    for (let i = 0; i < options.connectSamples; i++) {
      // Rotated each sample: no arm always follows the same other one.
      for (const arm of [...keys.slice(i % keys.length), ...keys.slice(0, i % keys.length)]) {
        await sleep(SETTLE_MS);
        const started = performance.now();
        await arms[arm].open();
        timings[arm].push(performance.now() - started);
      }
    }
    const paired = (a: ArmKey, b: ArmKey) => median(timings[a].map((t, i) => t - timings[b][i]));
    const result: ConnectionCostResult = {
      arms: { raw: await armResult(arms.raw, timings.raw), rawSelect1: await armResult(arms.rawSelect1, timings.rawSelect1), module: await armResult(arms.module, timings.module) },
      assertionMs: paired('module', 'raw'),
      beyondRoundTripMs: paired('module', 'rawSelect1'),
    };
    for (const key of keys) {
      const arm = result.arms[key];
      report.line(`${ARM_TITLES[key].padEnd(62)} median ${fixed(arm.medianMs)} ms, p90 ${fixed(arm.p90Ms)} ms, ${arm.roundTrips} round trip(s) after auth`);
    }
    report.line(`TLS assertion: +${fixed(result.assertionMs)} ms per new connection (median of paired differences), ${fixed(result.beyondRoundTripMs)} ms more than a first SELECT 1`);
    report.line();
    return result;
  } finally {
    await rawPool.end();
    await app.close();
  }
}

async function armResult(arm: Arm, timings: number[]): Promise<ArmResult> {
  return { medianMs: median(timings), p90Ms: percentile([...timings].sort((a, b) => a - b), 90), roundTrips: (await countReadyForQuery(arm)) - 1 };
}

/**
 * Counts the server's ReadyForQuery messages per new connection: one ends the startup, one ends
 * each query. The count is taken in an untimed pass by wrapping pg.Client's handler, which every
 * client (the module's subclass included) binds when it connects.
 */
async function countReadyForQuery(arm: Arm, connections = 3): Promise<number> {
  const proto = pg.Client.prototype as unknown as { _handleReadyForQuery(this: unknown, msg: unknown): void };
  const original = proto._handleReadyForQuery;
  let count = 0;
  proto._handleReadyForQuery = function (msg) {
    count++;
    return original.call(this, msg);
  };
  try {
    for (let i = 0; i < connections; i++) await arm.open();
  } finally {
    proto._handleReadyForQuery = original;
  }
  return count / connections;
}
