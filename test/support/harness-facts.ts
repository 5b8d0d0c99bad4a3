import type { LocalClusterFacts } from '../../src/local-postgres/index.js';

export const HARNESS_ENV = 'SECURE_PG_HARNESS_FILE';

/** What globalSetup hands to the test workers (see harness.ts). */
export interface HarnessFacts {
  caPath: string;
  unrelatedCaPath: string;
  binaries: { binDir: string; pgCtl: string; initdb: string; source: string; version: string; major: number; notes: string[] };
  clusters: Record<string, LocalClusterFacts>;
}
