import { expect } from '@jest/globals';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { appConnections, holdLock, waitForActivity } from '../support/server-faults.js';
import { send } from './http-load.js';

/**
 * Proves that all `max` pool slots of the app can be used at once, i.e. no client leaked and no dead
 * connection is stuck in the pool: with the users table locked, `max` concurrent reads must put `max`
 * of the app's backends into a lock wait; after the release all of them answer 200. Needs a statement
 * timeout of a few seconds at least.
 */
export async function expectFullPoolCapacity(cluster: LocalPostgresCluster, applicationName: string, max: number, baseUrl: string): Promise<void> {
  const waiting = (rows: Awaited<ReturnType<typeof appConnections>>) =>
    rows.filter((r) => r.applicationName === applicationName && r.waitEventType === 'Lock').length;
  const lock = await holdLock(cluster, cluster.facts.database, 'users');
  const reads = Promise.all(
    Array.from({ length: max }, () => send(baseUrl, { method: 'GET', path: '/users?status=suspended', expected: [200] }, 15_000)),
  ).then((outcomes) => outcomes.map((o) => o.status));
  let seen = 0;
  try {
    await waitForActivity(cluster, (rows) => (seen = waiting(rows)) === max, 5000).catch(() => {
      throw new Error(`only ${seen} of the ${max} pool slots could run a statement: a client leaked or a dead connection stayed in the pool`);
    });
  } finally {
    await lock.release();
  }
  expect(await reads).toEqual(Array(max).fill(200));
  expect((await appConnections(cluster, applicationName)).length).toBeLessThanOrEqual(max);
}
