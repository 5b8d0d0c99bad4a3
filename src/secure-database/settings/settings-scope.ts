import { AsyncLocalStorage } from 'node:async_hooks';
import { type ResolvedSettings, mergeSettings } from './database-settings.js';

// One per process: the settings of a request apply to every connection of the module (primary,
// replicas, named connections) that its code queries.
const settingsScope = new AsyncLocalStorage<ResolvedSettings>();
// As transaction-scope.ts: on Node 20 an enabled AsyncLocalStorage hooks every promise of the
// process, so it is switched off whenever no withSettings callback is running.
let runningCallbacks = 0;

/** Runs `fn` with `settings` (merged over those of an enclosing withSettings) applied to every statement it runs. */
export async function runWithSettings<T>(settings: ResolvedSettings | undefined, fn: () => Promise<T>): Promise<T> {
  const merged = mergeSettings(ambientSettings(), settings);
  runningCallbacks++;
  try {
    return await settingsScope.run(merged ?? new Map(), fn);
  } finally {
    if (--runningCallbacks === 0) settingsScope.disable();
  }
}

/** The settings of the withSettings callback the caller runs in, if any. */
export function ambientSettings(): ResolvedSettings | undefined {
  if (runningCallbacks === 0) return undefined;
  const settings = settingsScope.getStore();
  return settings?.size ? settings : undefined;
}
