import { expect } from '@jest/globals';
import { harness } from '../support/harness.js';
import { LEAKY_NUMBERS } from './failing-routes.js';

/** Nothing the database could echo: names and values (all contain "secret"), other values, SQL, credentials. */
export function expectNothingLeaked(text: string, extra: string[] = []): void {
  expect(text).not.toMatch(/secret/i);
  for (const token of [...LEAKY_NUMBERS, 'INSERT', 'SELECT', 'UPDATE', 'pg_sleep', 'Failing row', 'Key (', harness().tls.facts.password, ...extra]) {
    expect(text).not.toContain(token);
  }
}
