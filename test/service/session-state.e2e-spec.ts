import { afterAll, beforeAll, describe, expect, it, jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { type ServiceFixture, startService } from './service-fixture.js';

/**
 * Session state a caller sets through the service (SET, SET ROLE, SET search_path, a non-LOCAL SET
 * inside a transaction) must not reach the next caller of the same pooled connection. One connection
 * (poolMax 1) makes "the next caller" certain; the backend pid shows it was reset, not replaced.
 */
interface Session {
  pid: number;
  statementTimeout: string;
  searchPath: string;
  currentUser: string;
  applicationName: string;
}

describe('session state does not leak to the next caller of a pooled connection', () => {
  let f: ServiceFixture;
  const role = `session_role_${randomBytes(3).toString('hex')}`;
  const STATEMENT_TIMEOUT = '7s';

  beforeAll(async () => {
    f = await startService({ poolMax: 1, statementTimeoutMs: 7000 });
    await f.cluster.withSuperuser(async (admin) => {
      await admin.query(`CREATE ROLE ${role} NOLOGIN`);
      await admin.query(`GRANT ${role} TO ${admin.escapeIdentifier(f.cluster.facts.user)}`);
    });
  });

  afterAll(async () => {
    await f?.close();
    await f?.h.tls.withSuperuser((admin) => admin.query(`DROP ROLE IF EXISTS ${role}`));
  });

  const session = () =>
    f.db.fetchrow<Session>(
      `SELECT pg_catalog.pg_backend_pid() AS pid, pg_catalog.current_setting('statement_timeout') AS "statementTimeout",
              pg_catalog.current_setting('search_path') AS "searchPath", current_user AS "currentUser",
              pg_catalog.current_setting('application_name') AS "applicationName"`,
    );

  it('the module settings are in place to begin with', async () => {
    expect(await session()).toMatchObject({ statementTimeout: STATEMENT_TIMEOUT, currentUser: f.cluster.facts.user });
  });

  it.each<[string, (before: Session, after: Session) => void]>([
    ['SET statement_timeout = 0', (_, after) => expect(after.statementTimeout).toBe(STATEMENT_TIMEOUT)],
    ['SET search_path = pg_temp, public', (before, after) => expect(after.searchPath).toBe(before.searchPath)],
    [`SET ROLE ${role}`, (_, after) => expect(after.currentUser).toBe(f.cluster.facts.user)],
    ["SET application_name = 'someone-else'", (before, after) => expect(after.applicationName).toBe(before.applicationName)],
  ])('%s through the service: the next caller sees the startup settings, on the same backend', async (statement, check) => {
    const before = await session();
    await f.db.execute(statement);
    const after = await session();
    expect(after.pid).toBe(before.pid); // reset, not replaced
    check(before, after);
  });

  it('a non-LOCAL SET inside a transaction does not outlive it for the next caller', async () => {
    await f.db.transaction(async (tx) => {
      await tx.execute('SET statement_timeout = 0');
      expect(await tx.fetchval('SHOW statement_timeout')).toBe('0');
    });
    expect(await session()).toMatchObject({ statementTimeout: STATEMENT_TIMEOUT });
  });

  it('SET LOCAL stays inside its transaction, as PostgreSQL defines it', async () => {
    await f.db.transaction(async (tx) => {
      await tx.execute('SET LOCAL statement_timeout = 0');
      expect(await tx.fetchval('SHOW statement_timeout')).toBe('0');
    });
    expect(await session()).toMatchObject({ statementTimeout: STATEMENT_TIMEOUT });
  });

  it('only a session-changing statement pays for the reset: ordinary ones send nothing more', async () => {
    const sent = jest.spyOn(pg.Client.prototype, 'query');
    try {
      for (let i = 0; i < 5; i++) await f.db.fetchval('SELECT 1');
      expect(sent).toHaveBeenCalledTimes(5);
      sent.mockClear();
      await f.db.execute('SET statement_timeout = 0');
      expect(sent.mock.calls.map((call) => (typeof call[0] === 'string' ? call[0] : (call[0] as { text: string }).text))).toEqual([
        'SET statement_timeout = 0',
        'DISCARD ALL',
      ]);
    } finally {
      sent.mockRestore();
    }
  });
});
