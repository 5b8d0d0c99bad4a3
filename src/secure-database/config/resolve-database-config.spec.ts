import { describe, expect, it } from '@jest/globals';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { readDatabaseEnv } from './database.config.js';
import { redactUrl } from './database-url.js';
import { resolveDatabaseConfig } from './resolve-database-config.js';

const PASSWORD = 'S3cr3t-p@ss';
const URL_ = `postgresql://app:${encodeURIComponent(PASSWORD)}@db.example.com:6543/shop`;
const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

function problemsOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigurationError);
    return (error as Error).message;
  }
  throw new Error('expected a ConfigurationError');
}

describe('resolveDatabaseConfig', () => {
  it('DATABASE_INT8 and DATABASE_NUMERIC: unset leaves pg its own parsers (no types in the client config); a wrong value is named', () => {
    expect(resolveDatabaseConfig({ url: URL_ }, {}).client.types).toBeUndefined();
    expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_INT8: 'bigint' }), {}).client.types).toBeDefined();
    const problems = problemsOf(() => resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_INT8: 'float', DATABASE_NUMERIC: 'bigint' }), {}));
    expect(problems).toMatch(/DATABASE_INT8 \(int8\) must be one of \[string, number, bigint\]/);
    expect(problems).toMatch(/DATABASE_NUMERIC \(numeric\) must be one of \[string, number\]/);
  });

  it('DATABASE_ROW_CASE: none by default, camel from the environment, anything else named', () => {
    expect(resolveDatabaseConfig({ url: URL_ }, {}).rowCase).toBe('none');
    expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_ROW_CASE: 'camel' }), {}).rowCase).toBe('camel');
    expect(problemsOf(() => resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_ROW_CASE: 'snake' }), {}))).toMatch(/DATABASE_ROW_CASE \(rowCase\) must be one of \[none, camel\]/);
  });

  it('DATABASE_PIPELINING: reads by default, true/false (and on/off, 1/0) from the environment, anything else named', () => {
    expect(resolveDatabaseConfig({ url: URL_ }, {}).pipelining).toBe('reads');
    for (const [raw, mode] of [['reads', 'reads'], ['true', true], ['on', true], ['false', false], ['0', false]] as const) {
      expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_PIPELINING: raw }), {}).pipelining).toBe(mode);
    }
    expect(problemsOf(() => resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_PIPELINING: 'writes' }), {}))).toMatch(
      /DATABASE_PIPELINING \(pipelining\) must be reads \(the default\), true \(reads and writes\) or false/,
    );
  });

  it('defaults to verify-full against Node CA store, keepalive on, and the documented timeouts', () => {
    const c = resolveDatabaseConfig({ url: URL_ }, {});
    expect(c.tls).toMatchObject({ requestedMode: 'verify-full', mode: 'verify-full', verifiesChain: true, verifiesHostname: true, caSource: 'node-default' });
    expect(c.client).toMatchObject({
      host: 'db.example.com',
      port: 6543,
      database: 'shop',
      user: 'app',
      ssl: { rejectUnauthorized: true, minVersion: 'TLSv1.2' },
      connectionTimeoutMillis: 5000,
      statement_timeout: 30000,
      lock_timeout: 10000,
      idle_in_transaction_session_timeout: 60000,
      keepAlive: true,
      keepAliveInitialDelayMillis: 60000,
    });
    expect(c.timeouts.acquireMs).toBe(5000);
    expect(c.pool).toEqual({ max: 10, idleTimeoutMs: 10000, maxLifetimeSeconds: 1800 });
    expect(c.appEnv).toBe('production');
  });

  it('keeps the password off every enumerable field, so logging the config cannot leak it', () => {
    const c = resolveDatabaseConfig({ url: URL_ }, {});
    expect(c.client.password).toBe(PASSWORD);
    expect(JSON.stringify(c)).not.toContain(PASSWORD);
    expect(redactUrl(URL_)).toBe('postgresql://app:***@db.example.com:6543/shop');
  });

  it('says how to set DATABASE_URL when it is missing', () => {
    expect(problemsOf(() => resolveDatabaseConfig({}, {}))).toMatch(/DATABASE_URL environment variable must be set: .*secret/);
  });

  it('refuses other schemes and malformed URLs without echoing the password', () => {
    const wrong = problemsOf(() => resolveDatabaseConfig({ url: `mysql://app:${PASSWORD}@h/db` }, {}));
    expect(wrong).toMatch(/must start with postgres:\/\/ or postgresql:\/\/ \(it starts with mysql:\/\/\)/);
    const malformed = problemsOf(() => resolveDatabaseConfig({ url: `postgresql://app:${encodeURIComponent(PASSWORD)}@[bad/db` }, {}));
    expect(malformed).toMatch(/not a valid URL: percent-encode/);
    for (const text of [wrong, malformed]) for (const pw of [PASSWORD, encodeURIComponent(PASSWORD)]) expect(text).not.toContain(pw);
  });

  it('lists every offending option at once, naming the environment variable, never the value', () => {
    const message = problemsOf(() =>
      resolveDatabaseConfig(
        readDatabaseEnv({
          DATABASE_URL: URL_,
          DATABASE_POOL_MAX: '0',
          DATABASE_STATEMENT_TIMEOUT_MS: '-5',
          DATABASE_CONNECT_TIMEOUT_MS: 'soon',
          DATABASE_SSL_MIN_MODE: 'paranoid',
        }),
        {},
      ),
    );
    expect(message).toContain('DATABASE_POOL_MAX (poolMax) must be at least 1');
    expect(message).toContain('DATABASE_STATEMENT_TIMEOUT_MS (statementTimeoutMs) must be at least 1 milliseconds');
    expect(message).toContain('DATABASE_CONNECT_TIMEOUT_MS (connectTimeoutMs) must be a whole number of milliseconds');
    expect(message).toContain('DATABASE_SSL_MIN_MODE (sslMinMode) must be one of');
    expect(message).not.toContain('soon');
    expect(message).not.toContain('paranoid');
    expect(message).not.toContain(PASSWORD);
  });

  it('converts numeric strings from the environment and refuses unknown option keys', () => {
    const c = resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_POOL_MAX: '25', APP_ENV: 'development' }), {});
    expect(c.pool.max).toBe(25);
    expect(c.appEnv).toBe('development');
    expect(problemsOf(() => resolveDatabaseConfig({ url: URL_, poolSize: 3 } as never, {}))).toMatch(/poolSize is not a SecureDatabaseModule option/);
  });

  it('the stream idle deadline follows the statement timeout unless set; zero, negative or fractional values are refused by name', () => {
    expect(resolveDatabaseConfig({ url: URL_ }, {}).timeouts.streamIdleMs).toBe(30_000);
    expect(resolveDatabaseConfig({ url: URL_, statementTimeoutMs: 5000 }, {}).timeouts.streamIdleMs).toBe(5000);
    expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_STREAM_IDLE_TIMEOUT_MS: '250' }), {}).timeouts.streamIdleMs).toBe(250);
    for (const bad of ['0', '-1', '1.5', 'soon']) {
      expect(problemsOf(() => resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_STREAM_IDLE_TIMEOUT_MS: bad }), {}))).toMatch(
        /DATABASE_STREAM_IDLE_TIMEOUT_MS \(streamIdleTimeoutMs\) must be (at least 1 milliseconds|a whole number of milliseconds)/,
      );
    }
  });

  it('treats any APP_ENV but development/test as production', () => {
    for (const env of [undefined, 'prod', 'staging', 'PRODUCTION', '']) {
      expect(resolveDatabaseConfig({ url: URL_ }, { APP_ENV: env }).appEnv).toBe('production');
    }
    expect(resolveDatabaseConfig({ url: URL_ }, { APP_ENV: 'TEST' }).appEnv).toBe('test');
  });

  it('honours connect_timeout (seconds), application_name and options from the URL; explicit options win', () => {
    const c = resolveDatabaseConfig({ url: `${URL_}?connect_timeout=10&application_name=shop-api&options=endpoint%3Dep-1` }, {});
    expect(c.client).toMatchObject({ connectionTimeoutMillis: 10000, application_name: 'shop-api', options: 'endpoint=ep-1' });
    expect(resolveDatabaseConfig({ url: `${URL_}?connect_timeout=10`, connectTimeoutMs: 2500 }, {}).timeouts.connectMs).toBe(2500);
    expect(problemsOf(() => resolveDatabaseConfig({ url: `${URL_}?connect_timeout=0` }, {}))).toMatch(/connect_timeout .* at least 1/);
  });

  it('reads DATABASE_URL_FILE and refuses both at once', () => {
    const dir = mkdtempSync(join(tmpdir(), 'url-file-'));
    const file = join(dir, 'url');
    writeFileSync(file, `${URL_}\n`);
    expect(resolveDatabaseConfig({ urlFile: file }, {}).target.host).toBe('db.example.com');
    expect(problemsOf(() => resolveDatabaseConfig({ url: URL_, urlFile: file }, {}))).toMatch(/only one of DATABASE_URL and DATABASE_URL_FILE/);
    expect(problemsOf(() => resolveDatabaseConfig({ urlFile: join(dir, 'missing') }, {}))).toMatch(/DATABASE_URL_FILE names no readable file \(ENOENT\)/);
    const misplaced = problemsOf(() => resolveDatabaseConfig({ urlFile: URL_ }, {}));
    expect(misplaced).toMatch(/it holds a URL; put the URL in DATABASE_URL instead/);
    expect(misplaced).not.toContain(PASSWORD);
    expect(misplaced).not.toContain('db.example.com');
  });

  it('derives application_name from the platform and detects the database provider', () => {
    const c = resolveDatabaseConfig({ url: 'postgresql://u:p@ep-cool-1.eu-central-1.aws.neon.tech/db' }, { RAILWAY_ENVIRONMENT: 'production', RAILWAY_SERVICE_NAME: 'api' });
    expect(c.cloud).toEqual({ platform: 'railway', service: 'api', databaseProvider: 'neon' });
    expect(c.applicationName).toBe('api@railway');
  });

  describe('host, port, user, password and dbname in the query string override the URL, as in libpq', () => {
    const base = 'postgresql://app:pw@db.example.com:6543/shop';
    it.each([
      ['host', '?host=other.example.com', { host: 'other.example.com', port: 6543, user: 'app', database: 'shop' }],
      ['port', '?port=7000', { host: 'db.example.com', port: 7000 }],
      ['user', '?user=reporting', { user: 'reporting', database: 'shop' }],
      ['dbname', '?dbname=analytics', { database: 'analytics', user: 'app' }],
    ])('%s', (_name, query, expected) => {
      const c = resolveDatabaseConfig({ url: `${base}${query}` }, {});
      expect(c.client).toMatchObject(expected);
      expect(c.target).toMatchObject(expected);
      expect(c.warnings.join('\n')).not.toMatch(/ignored/);
    });

    it('password (and it stays out of every message)', () => {
      const c = resolveDatabaseConfig({ url: `${base}?password=${encodeURIComponent(PASSWORD)}` }, {});
      expect(c.client.password).toBe(PASSWORD);
      expect(JSON.stringify(c)).not.toContain(PASSWORD);
      const problem = problemsOf(() => resolveDatabaseConfig({ url: `${base}?password=${encodeURIComponent(PASSWORD)}&sslmode=bogus` }, {}));
      expect(problem).not.toContain(PASSWORD);
    });

    it('the database defaults to the user name, as in libpq', () => {
      expect(resolveDatabaseConfig({ url: 'postgresql://app:pw@db.example.com' }, {}).client.database).toBe('app');
    });

  });

  describe("host lists, target_session_attrs and load_balance_hosts with libpq's meanings", () => {
    const hostsOf = (url: string) => resolveDatabaseConfig({ url }, {}).target.hosts;

    it('reads each host with its own port (5432 when it has none), the first one as the target host', () => {
      const c = resolveDatabaseConfig({ url: 'postgresql://app:pw@h1.example.com:5432,h2.example.com:5433,[::1],h4/shop' }, {});
      expect(c.target.hosts).toEqual([
        { host: 'h1.example.com', port: 5432 },
        { host: 'h2.example.com', port: 5433 },
        { host: '::1', port: 5432 },
        { host: 'h4', port: 5432 },
      ]);
      expect(c.target).toMatchObject({ host: 'h1.example.com', port: 5432, database: 'shop', user: 'app' });
    });

    it('host and port lists in the query string: one port for all hosts, or one per host', () => {
      expect(hostsOf('postgresql://app:pw@/shop?host=h1,h2&port=6000')).toEqual([{ host: 'h1', port: 6000 }, { host: 'h2', port: 6000 }]);
      expect(hostsOf('postgresql://app:pw@/shop?host=h1,h2&port=6000,6001')).toEqual([{ host: 'h1', port: 6000 }, { host: 'h2', port: 6001 }]);
      expect(problemsOf(() => hostsOf('postgresql://app:pw@/shop?host=h1,h2,h3&port=1,2'))).toContain('lists 3 hosts and 2 ports');
      expect(problemsOf(() => hostsOf('postgresql://app:pw@h1,,h3/shop'))).toContain('empty entry in its host list');
      expect(problemsOf(() => hostsOf('postgresql://app:pw@h1,h2:99999/shop'))).toContain('invalid port');
    });

    it('target_session_attrs and load_balance_hosts are honoured, other values refused', () => {
      const c = resolveDatabaseConfig({ url: 'postgresql://app:pw@h1,h2/shop?target_session_attrs=read-write&load_balance_hosts=random' }, {});
      expect(c.topology).toEqual({ targetSessionAttrs: 'read-write', loadBalanceHosts: 'random', readOnly: false });
      expect(c.warnings.join('\n')).not.toMatch(/ignored/);
      for (const value of ['any', 'read-only', 'primary', 'standby', 'prefer-standby']) {
        expect(resolveDatabaseConfig({ url: `postgresql://app:pw@h1/shop?target_session_attrs=${value}` }, {}).topology.targetSessionAttrs).toBe(value);
      }
      expect(problemsOf(() => resolveDatabaseConfig({ url: 'postgresql://app:pw@h1/shop?target_session_attrs=master' }, {}))).toContain('target_session_attrs');
      expect(problemsOf(() => resolveDatabaseConfig({ url: 'postgresql://app:pw@h1/shop?load_balance_hosts=yes' }, {}))).toContain('load_balance_hosts');
    });

    it('a Unix socket anywhere in the list is refused', () => {
      expect(problemsOf(() => hostsOf('postgresql://app:pw@/shop?host=h1,%2Fvar%2Frun%2Fpostgresql'))).toContain('Unix socket');
    });
  });

  describe('poolers', () => {
    it.each([
      ['postgresql://u:p@ep-cool-1-pooler.eu-central-1.aws.neon.tech/db', 'transaction'],
      ['postgresql://u:p@ep-cool-1.eu-central-1.aws.neon.tech/db', 'none'],
      ['postgresql://postgres.ref:p@aws-0-eu-central-1.pooler.supabase.com:6543/postgres', 'transaction'],
      ['postgresql://postgres.ref:p@aws-0-eu-central-1.pooler.supabase.com:5432/postgres', 'session'],
      ['postgresql://postgres:p@db.ref.supabase.co:6543/postgres', 'transaction'],
      ['postgresql://postgres:p@db.ref.supabase.co:5432/postgres', 'none'],
    ])('%s is detected as %s', (url, mode) => {
      expect(resolveDatabaseConfig({ url }, {}).pooler.mode).toBe(mode);
    });

    it('every host of a host list is looked at, not only the first', () => {
      const neon = 'ep-cool-1.eu-central-1.aws.neon.tech';
      const neonPooler = 'ep-cool-1-pooler.eu-central-1.aws.neon.tech';
      const both = (a: string, b: string) => resolveDatabaseConfig({ url: `postgresql://u:p@${a},${b}/db` }, {});
      expect(both(neonPooler, 'ep-two-pooler.us-east-2.aws.neon.tech').pooler).toMatchObject({ mode: 'transaction', source: 'host' });
      expect(both(neon, 'ep-two.us-east-2.aws.neon.tech').pooler.mode).toBe('none');
      // The same list as libpq's host= parameter.
      const inQuery = resolveDatabaseConfig({ url: `postgresql://u:p@/db?host=${neonPooler},ep-two-pooler.us-east-2.aws.neon.tech` }, {});
      expect(inQuery.pooler.mode).toBe('transaction');
      // A later host that is a pooler (or a pooler of another mode) cannot be told from the first: the operator must say.
      const mixed = [
        [neon, neonPooler],
        [neonPooler, neon],
        ['aws-0-eu-central-1.pooler.supabase.com:5432', 'aws-0-eu-central-1.pooler.supabase.com:6543'],
      ];
      for (const [a, b] of mixed) expect(problemsOf(() => both(a, b))).toContain('DATABASE_URL lists hosts that need different pooler modes: set DATABASE_POOLER');
      expect(resolveDatabaseConfig({ url: `postgresql://u:p@${neon},${neonPooler}/db`, pooler: 'transaction' }, {}).pooler.mode).toBe('transaction');
    });

    it('DATABASE_POOLER wins over detection, and none turns it off', () => {
      const neonPooler = 'postgresql://u:p@ep-cool-1-pooler.eu-central-1.aws.neon.tech/db';
      expect(resolveDatabaseConfig({ url: neonPooler, pooler: 'none' }, {}).pooler).toEqual({ mode: 'none', source: 'DATABASE_POOLER' });
      expect(resolveDatabaseConfig(readDatabaseEnv({ DATABASE_URL: URL_, DATABASE_POOLER: 'transaction' }), {}).pooler.mode).toBe('transaction');
      expect(problemsOf(() => resolveDatabaseConfig({ url: URL_, pooler: 'statement' as 'none' }, {}))).toContain('DATABASE_POOLER (pooler) must be one of');
    });

    it('behind a pooler no server setting travels in the startup packet; the timeouts are kept for SET LOCAL', () => {
      const c = resolveDatabaseConfig({ url: URL_, pooler: 'transaction', statementTimeoutMs: 1234 }, {});
      expect(c.client).not.toHaveProperty('statement_timeout');
      expect(c.client).not.toHaveProperty('lock_timeout');
      expect(c.client).not.toHaveProperty('idle_in_transaction_session_timeout');
      expect(c.client.query_timeout).toBe(1234 + 5000); // the client-side backstop stays
      expect(c.serverTimeouts).toEqual({ statementTimeoutMs: 1234, lockTimeoutMs: 10_000, idleInTransactionTimeoutMs: 60_000 });
      expect(problemsOf(() => resolveDatabaseConfig({ url: `${URL_}?options=-c%20search_path%3Dapp`, pooler: 'transaction' }, {}))).toContain('poolers refuse');
    });

    it('DATABASE_DIRECT_URL is resolved with the same options and no pooler, its problems named as its own', () => {
      const c = resolveDatabaseConfig({ url: URL_, pooler: 'transaction', directUrl: 'postgresql://app:pw@direct.example.com/shop', statementTimeoutMs: 999 }, {});
      expect(c.direct?.target).toMatchObject({ host: 'direct.example.com', port: 5432 });
      expect(c.direct?.pooler.mode).toBe('none');
      expect(c.direct?.client).toMatchObject({ statement_timeout: 999 });
      expect(problemsOf(() => resolveDatabaseConfig({ url: URL_, pooler: 'transaction', directUrl: 'mysql://x@y/z' }, {}))).toContain('DATABASE_DIRECT_URL must start with postgres://');
      expect(resolveDatabaseConfig({ url: URL_, directUrl: 'postgresql://app:pw@direct.example.com/shop' }, {}).warnings.join('\n')).toContain('DATABASE_DIRECT_URL is only used behind a transaction pooler');
    });
  });

  it('reports unknown URL parameters by name only', () => {
    const c = resolveDatabaseConfig({ url: `${URL_}?pgbouncer=true&token=hunter2` }, {});
    expect(c.warnings.join('\n')).toContain('ignored: pgbouncer, token');
    expect(c.warnings.join('\n')).not.toContain('hunter2');
  });
});

describe('TLS policy (libpq sslmode semantics, stricter defaults)', () => {
  const resolve = (query: string, extra: object = {}, env: NodeJS.ProcessEnv = {}) => resolveDatabaseConfig({ url: `${URL_}${query}`, ...extra }, env);

  it('require: encrypted, unverified, warned with the risk and the fix', () => {
    const c = resolve('?sslmode=require');
    expect(c.tls).toMatchObject({ mode: 'require', encrypted: true, verifiesChain: false });
    expect(c.client.ssl).toMatchObject({ rejectUnauthorized: false });
    expect(c.warnings.join()).toMatch(/man-in-the-middle.*Fix: use sslmode=verify-full/);
  });

  it('require with a root certificate behaves as verify-ca (libpq), keeping the CA from DATABASE_SSL_ROOT_CERT', () => {
    const c = resolve('?sslmode=require', { sslRootCert: PEM });
    expect(c.tls).toMatchObject({ requestedMode: 'require', mode: 'verify-ca', caSource: 'DATABASE_SSL_ROOT_CERT', verifiesHostname: false });
    expect(c.client.ssl).toMatchObject({ ca: PEM, rejectUnauthorized: true });
  });

  it('verify-ca needs an own CA; sslrootcert=system needs verify-full', () => {
    expect(problemsOf(() => resolve('?sslmode=verify-ca'))).toMatch(/verify-ca needs your own CA/);
    expect(problemsOf(() => resolve('?sslmode=require&sslrootcert=system'))).toMatch(/sslrootcert=system needs sslmode=verify-full/);
    expect(resolve('?sslmode=verify-full&sslrootcert=system').tls.caSource).toBe('node-default');
  });

  it('reads sslrootcert and DATABASE_SSL_ROOT_CERT paths, and names an unreadable one', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ca-'));
    writeFileSync(join(dir, 'ca.pem'), PEM);
    expect(resolve(`?sslrootcert=${join(dir, 'ca.pem')}`).client.ssl).toMatchObject({ ca: PEM });
    expect(resolve('', { sslRootCert: join(dir, 'ca.pem') }).client.ssl).toMatchObject({ ca: PEM });
    expect(problemsOf(() => resolve('', { sslRootCert: join(dir, 'nope.pem') }))).toMatch(/DATABASE_SSL_ROOT_CERT is neither PEM text .* nor a readable file \(ENOENT\)/);
  });

  it('never echoes a certificate or key value that is not PEM (a key pasted without its header), only names the setting', () => {
    const pastedKey = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj';
    const fromEnv = problemsOf(() => resolve('', { sslRootCert: pastedKey }));
    expect(fromEnv).toMatch(/DATABASE_SSL_ROOT_CERT is neither PEM text/);
    const fromUrl = problemsOf(() => resolve(`?sslkey=${pastedKey}&sslcert=${pastedKey}x&sslrootcert=${pastedKey}y`));
    expect(fromUrl).toMatch(/sslkey in DATABASE_URL is neither PEM text/);
    expect(fromUrl).toMatch(/sslcert in DATABASE_URL is neither PEM text/);
    expect(fromUrl).toMatch(/sslrootcert in DATABASE_URL is neither PEM text/);
    for (const text of [fromEnv, fromUrl]) expect(text).not.toContain(pastedKey.slice(0, 20));
  });

  it.each(['disable', 'allow', 'prefer'])('sslmode=%s is refused without the development opt-in', (mode) => {
    expect(problemsOf(() => resolve(`?sslmode=${mode}`))).toMatch(/refused: .*DATABASE_ALLOW_PLAINTEXT=true with APP_ENV=development or test/);
    expect(problemsOf(() => resolve(`?sslmode=${mode}`, { allowPlaintext: 'true' }, { APP_ENV: 'production' }))).toMatch(/refused in production/);
    const dev = resolve(`?sslmode=${mode}`, { allowPlaintext: 'true', appEnv: 'development' });
    expect(dev.tls).toMatchObject({ mode: 'disable', encrypted: false });
    expect(dev.client.ssl).toBe(false);
  });

  it('DATABASE_ALLOW_PLAINTEXT in production is an error even with a TLS mode', () => {
    expect(problemsOf(() => resolve('', { allowPlaintext: true }))).toMatch(/DATABASE_ALLOW_PLAINTEXT=true is refused in production/);
  });

  it('DATABASE_SSL_MIN_MODE demands a stronger mode', () => {
    expect(problemsOf(() => resolve('?sslmode=require', { sslMinMode: 'verify-full' }))).toMatch(/DATABASE_SSL_MIN_MODE=verify-full but the connection would use sslmode=require/);
    expect(resolve('', { sslMinMode: 'verify-full' }).tls.mode).toBe('verify-full');
  });

  it('NODE_TLS_REJECT_UNAUTHORIZED=0 with a verifying mode is a startup error', () => {
    expect(problemsOf(() => resolve('', {}, { NODE_TLS_REJECT_UNAUTHORIZED: '0' }))).toMatch(/NODE_TLS_REJECT_UNAUTHORIZED=0 .* unset it/);
  });

  it('nothing in the URL replaces the TLS settings (ssl=false / sslmode junk)', () => {
    expect(resolve('?ssl=false').client.ssl).toMatchObject({ rejectUnauthorized: true });
    expect(problemsOf(() => resolve('?sslmode=no-verify'))).toMatch(/sslmode in DATABASE_URL must be one of/);
  });
});

describe('redactUrl', () => {
  it('hides the password even in URLs that do not parse', () => {
    expect(redactUrl('postgres://u:pa ss@[h/db')).toBe('postgres://u:***@[h/db');
    expect(redactUrl('postgresql://u@h/db?password=x&sslmode=require')).toBe('postgresql://u@h/db?password=***&sslmode=require');
  });
});
