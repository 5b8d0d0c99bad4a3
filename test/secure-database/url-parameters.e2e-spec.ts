import { describe, expect, it } from '@jest/globals';
import { AuthenticationError } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { startDatabaseApp, startupError } from '../support/database-app.js';

const h = harness();
const { host, port, user, password, database } = h.tls.facts;

/** libpq's rule, on a real server: query parameters override the URL's own parts. */
describe('DATABASE_URL query parameters host, port, user, password, dbname', () => {
  const connected = async (url: string) => {
    const { db, close } = await startDatabaseApp({ url, sslRootCert: h.caPem, startupRetries: 0 });
    try {
      return await db.withClient(async (c) => (await c.query('SELECT pg_catalog.current_database() AS db, current_user AS "user", pg_catalog.inet_server_port() AS port')).rows[0]);
    } finally {
      await close();
    }
  };

  it('all five in the query string reach the server they name, over a URL whose own parts are wrong', async () => {
    const query = new URLSearchParams({ host, port: String(port), user, password, dbname: database });
    expect(await connected(`postgresql://nobody:wrong@unreachable.invalid:1/nodb?${query}`)).toEqual({ db: database, user, port });
  });

  it('the query password wins over the URL password (a wrong one there is not used)', async () => {
    expect((await connected(`postgresql://${user}:wrong@${host}:${port}/${database}?password=${encodeURIComponent(password)}`)).user).toBe(user);
    const error = await startupError({ url: `postgresql://${user}:${encodeURIComponent(password)}@${host}:${port}/${database}?password=wrong`, sslRootCert: h.caPem, startupRetries: 0 });
    expect(error).toBeInstanceOf(AuthenticationError);
  });
});
