import { serviceContender, type Contender, rawPgContender } from '../support/contenders.js';
import type { BenchDatabase } from '../support/bench-database.js';
import type { BenchOptions } from '../support/bench-options.js';
import type { Report } from '../support/report.js';
import { sql } from '../../src/index.js';
import { type ThroughputResult, runThroughput } from './throughput.scenario.js';

/**
 * What per-call settings cost (tenant isolation): the primary-key select through DatabaseService
 * without settings, and through a second DatabaseService (its own module: once a service has used a
 * setting name, all its statements set it) with `{ settings: { 'app.tenant_id': … } }`, whose
 * set_config travels in the statement's own round trip. Raw pg.Pool is the baseline of both ratios.
 */
export async function runSettings(bench: BenchDatabase, options: BenchOptions, report: Report): Promise<ThroughputResult[]> {
  const { target } = bench;
  const plain = await serviceContender(target, options.poolMax);
  const tenant = await serviceContender(target, options.poolMax);
  const rawPg = rawPgContender(target, options.poolMax);
  const withSettings: Contender = {
    key: 'service-settings',
    description: `DatabaseService as "service", each fetchrow with { settings: { 'app.tenant_id': … } } (set_config(…, true) ahead of the statement, same round trip)`,
    selectUser: (id) => tenant.service.fetchrow<{ id: number }>(sql`SELECT id, name, email FROM bench_users WHERE id = ${id}`, { settings: { 'app.tenant_id': id % 8 } }),
    close: () => tenant.close(),
  };
  try {
    report.line('# Per-call settings: PK select with { settings } vs without');
    for (const c of [plain, withSettings, rawPg]) report.line(`  ${c.key.padEnd(16)} ${c.description}`);
    report.line();
    return await runThroughput('select', [plain, withSettings, rawPg], options, report);
  } finally {
    await Promise.allSettled([plain, withSettings, rawPg].map((c) => c.close()));
  }
}
