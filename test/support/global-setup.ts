import { tsImport } from 'tsx/esm/api';
import type { LocalPostgres } from '../../src/local-postgres/index.js';

declare global {
  var __SECURE_PG_HARNESS__: LocalPostgres | undefined;
}

// Jest loads globalSetup outside its module system (no moduleNameMapper, no ts transform for imports),
// so the TypeScript it needs is loaded through tsx.
export default async function globalSetup(): Promise<void> {
  const { startHarness } = (await tsImport('./start-harness.ts', import.meta.url)) as typeof import('./start-harness.js');
  globalThis.__SECURE_PG_HARNESS__ = await startHarness();
}
