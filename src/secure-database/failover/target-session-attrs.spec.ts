import { describe, expect, it } from '@jest/globals';
import { meetsTarget, passesFor } from './target-session-attrs.js';

const primary = { inRecovery: false, readOnly: false };
const standby = { inRecovery: true, readOnly: true };
const readOnlyPrimary = { inRecovery: false, readOnly: true }; // default_transaction_read_only = on

describe("target_session_attrs, with libpq's meanings", () => {
  it.each([
    ['any', [true, true, true]],
    ['read-write', [true, false, false]],
    ['read-only', [false, true, true]],
    ['primary', [true, false, true]],
    ['standby', [false, true, false]],
  ] as const)('%s accepts [primary, standby, read-only primary] = %j', (target, expected) => {
    expect([primary, standby, readOnlyPrimary].map((state) => meetsTarget(target, state))).toEqual(expected);
  });

  it('prefer-standby looks for a standby over every host first, then takes any server', () => {
    expect(passesFor('prefer-standby')).toEqual(['standby', 'any']);
    expect(passesFor('read-write')).toEqual(['read-write']);
  });
});
