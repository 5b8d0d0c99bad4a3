import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { harness } from '../support/harness.js';
import { type DatabaseApp, startDatabaseApp } from '../support/database-app.js';

/**
 * DatabasePool.withClient (migrations, the doctor, startup) when its callback fails with the connection
 * in an unknown state: a statement still running on it, or a connection the server ended (whose socket
 * may not have closed yet when the next caller asks). It is destroyed, never lent to the next caller.
 * One pooled connection makes "the next caller" certain.
 */
describe('withClient after a failure that leaves the connection unusable', () => {
  const h = harness();
  let started: DatabaseApp;

  beforeAll(async () => {
    started = await startDatabaseApp({ url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 1 });
  });
  afterAll(() => started?.close());

  const pidOf = () => started.db.withClient(async (client) => (await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid);

  it('a callback that throws with its statement still running: the next caller gets another connection, not one busy with it', async () => {
    let lent = 0;
    const failing = started.db.withClient(async (client) => {
      lent = (await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid;
      client.query('SELECT pg_catalog.pg_sleep(5)').catch(() => undefined);
      throw new Error('gave up');
    });
    await expect(failing).rejects.toThrow('gave up');
    expect(await pidOf()).not.toBe(lent);
  });

  it('the server ended the connection (57P01): the next caller gets a new one and its statement runs', async () => {
    let terminated = 0;
    const failing = started.db.withClient(async (client) => {
      terminated = (await client.query<{ pid: number }>('SELECT pg_catalog.pg_backend_pid() AS pid')).rows[0].pid;
      const sleeping = client.query('SELECT pg_catalog.pg_sleep(30)');
      await h.tls.withSuperuser((admin) => admin.query('SELECT pg_terminate_backend($1)', [terminated]));
      await sleeping;
    });
    await expect(failing).rejects.toMatchObject({ code: '57P01' });
    expect(await pidOf()).not.toBe(terminated);
  });
});
