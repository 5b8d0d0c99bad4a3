import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { harness, scratchDatabase } from '../support/harness.js';
import { runDoctorCli, statuses } from './doctor-process.js';

const h = harness();

// The checks a healthy setup passes whatever the machine's load (latency may warn on a busy CI box).
const STEADY = [
  'connection',
  'configuration',
  'tls',
  'tls-protocol',
  'server-identity',
  'certificate-expiry',
  'certificate-signatures',
  'channel-binding',
  'authentication',
  'role-privileges',
  'row-level-security',
  'password-encryption',
  'timeouts',
  'server-tls-minimum',
  'app-env',
  'node-tls-reject-unauthorized',
  'platform',
];
const only = (run: Awaited<ReturnType<typeof runDoctorCli>>, ids = STEADY) => Object.fromEntries(Object.entries(statuses(run)).filter(([id]) => ids.includes(id)));
const allPass = (overrides: Record<string, string> = {}) => ({ ...Object.fromEntries(STEADY.map((id) => [id, 'pass'])), ...overrides });

const verified = (url: string, extra: Record<string, string> = {}) => ({ DATABASE_URL: url, DATABASE_SSL_ROOT_CERT: h.caPath, ...extra });

describe('doctor (the built CLI, as a child process) on the shared clusters', () => {
  it('TLS cluster, verify-full, app role: exit 0; everything passes but channel binding, offered by the server and not used', async () => {
    const run = await runDoctorCli(verified(h.tls.url()));
    expect(run.code).toBe(0);
    expect(only(run)).toEqual(allPass({ 'channel-binding': 'warn' }));
    expect(run.json).toMatchObject({ verdict: 'warn', target: `postgresql://app:***@127.0.0.1:${h.tls.facts.port}/app?sslmode=verify-full` });
    expect(run.check('tls').evidence).toMatch(/^socket: TLSv1\.3 \S+; pg_stat_ssl: ssl = true, TLSv1\.3$/);
    expect(run.check('server-identity').evidence).toMatch(/^verified \(chain and host name, sslmode=verify-full, CA: DATABASE_SSL_ROOT_CERT\)/);
    expect(run.check('authentication').evidence).toMatch(/^SCRAM-SHA-256: /);
    expect(run.check('channel-binding')).toMatchObject({ evidence: expect.stringMatching(/offers SCRAM-SHA-256-PLUS/), fix: expect.stringMatching(/channel_binding=require/) });
    expect(run.check('role-privileges').evidence).toMatch(/^app: not a superuser/);
    expect(run.check('timeouts').evidence).toBe('statement_timeout=30000 ms, lock_timeout=10000 ms, idle_in_transaction_session_timeout=60000 ms');
    // The harness server refuses TLS below 1.2 (ssl_min_protocol_version), which the app role cannot read: the handshake says so.
    expect(run.check('server-tls-minimum').evidence).toMatch(/a TLS 1\.0\/1\.1-only handshake was refused/);
    expect(run.check('certificate-expiry').evidence).toMatch(/valid until \d{4}-\d{2}-\d{2} \(36[45] days\)/);
    expect(run.check('certificate-signatures').evidence).toBe(
      'CN=localhost: ecdsa-with-SHA256, EC P-256 <- CN=local-postgres-ca: ecdsa-with-SHA256, EC P-256 (root)',
    );
    expect(run.check('latency').evidence).toMatch(/^connect [\d.]+ ms \(TCP, TLS and authentication [\d.]+ ms, then the TLS assertion\); round trip median [\d.]+ ms/);
  });

  it('the same as a table: one row per check (status, id, evidence), the fix under each warning, then the one-line verdict', async () => {
    const run = await runDoctorCli(verified(h.tls.url()), { args: ['doctor'] });
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe(`nestjs-secure-postgres doctor: postgresql://app:***@127.0.0.1:${h.tls.facts.port}/app?sslmode=verify-full`);
    expect(lines[2]).toMatch(/^STATUS {2}CHECK +EVIDENCE$/);
    expect(lines).toContainEqual(expect.stringMatching(/^pass {4}tls {2,}socket: TLSv1\.3/));
    const warning = lines.findIndex((l) => /^warn {4}channel-binding /.test(l));
    expect(lines[warning + 1]).toMatch(/^ +fix: add channel_binding=require/);
    expect(lines.at(-1)).toBe('Verdict: PASS with 1 warning (channel-binding)');
  });

  it('channel_binding=require against the scram cluster: channel binding passes (SCRAM-SHA-256-PLUS), nothing warns', async () => {
    const run = await runDoctorCli(verified(h.tls.url({ channel_binding: 'require' })));
    expect(run.code).toBe(0);
    expect(only(run)).toEqual(allPass());
    expect(run.check('channel-binding').evidence).toBe('in use: SCRAM-SHA-256-PLUS (tls-server-end-point), channel_binding=require');
    expect(run.check('authentication').evidence).toMatch(/^SCRAM-SHA-256-PLUS: /);
  });

  it('plaintext cluster: exit 1 on tls; the checks that need a connection are not checked, not passed', async () => {
    const run = await runDoctorCli({ DATABASE_URL: h.plain.url() });
    expect(run.code).toBe(1);
    expect(run.check('tls')).toMatchObject({ status: 'fail', evidence: 'SSL required but not active: the server does not offer TLS' });
    expect(run.check('connection')).toMatchObject({ status: 'fail', fix: 'see tls' });
    for (const id of ['authentication', 'role-privileges', 'timeouts', 'certificate-expiry']) expect(run.check(id).status).toBe('skip');
    expect(run.json?.summary).toMatch(/^FAIL: 2 checks failed \(connection, tls\)/);
  });

  it('plaintext under the development opt-in: connected, and still exit 1 on tls', async () => {
    const run = await runDoctorCli({ DATABASE_URL: h.plain.url({ sslmode: 'disable' }), APP_ENV: 'development', DATABASE_ALLOW_PLAINTEXT: 'true' });
    expect(run.code).toBe(1);
    expect(run.check('connection').status).toBe('pass');
    expect(run.check('tls')).toMatchObject({ status: 'fail', evidence: expect.stringMatching(/^PLAINTEXT/) });
    expect(run.check('server-identity').status).toBe('fail');
    expect(run.check('app-env').status).toBe('warn');
    expect(run.check('authentication').status).toBe('pass'); // SCRAM: still no password on the wire
  });

  it('superuser role: exit 1 on privileges, and only there', async () => {
    const run = await runDoctorCli(verified(h.tls.url({}, { user: h.tls.facts.superuser, password: h.tls.facts.superuserPassword })));
    expect(run.code).toBe(1);
    expect(only(run)).toEqual(allPass({ 'channel-binding': 'warn', 'role-privileges': 'fail', 'row-level-security': 'warn' }));
    expect(run.check('role-privileges').evidence).toMatch(/^postgres: SUPERUSER, CREATEROLE, BYPASSRLS, REPLICATION, CREATEDB/);
    expect(run.check('row-level-security').evidence).toBe('postgres: SUPERUSER, BYPASSRLS: no row-level security policy applies to this role');
  });

  it('row-level security the app role owns without FORCE: warn (its policies do not apply to it), tables named only in development; forced: pass', async () => {
    const scratch = await scratchDatabase(h.tls);
    try {
      const url = scratch.cluster.url();
      await scratch.cluster.withSuperuser(async (admin) => {
        await admin.query(`SET ROLE ${admin.escapeIdentifier(scratch.cluster.facts.user)}`);
        await admin.query('CREATE TABLE tenant_notes (tenant_id int); ALTER TABLE tenant_notes ENABLE ROW LEVEL SECURITY');
      }, scratch.cluster.facts.database);
      const owned = await runDoctorCli(verified(url));
      expect(owned.check('row-level-security')).toEqual({
        id: 'row-level-security',
        status: 'warn',
        evidence: '1 table(s) with row-level security are owned by app without FORCE ROW LEVEL SECURITY, so their policies do not apply to it',
        fix: 'let another role own them (the migration role of DATABASE_MIGRATION_URL), or ALTER TABLE … FORCE ROW LEVEL SECURITY',
      });
      const development = await runDoctorCli(verified(url, { APP_ENV: 'development' }));
      expect(development.check('row-level-security').evidence).toMatch(/so their policies do not apply to it: public\.tenant_notes$/);
      await scratch.cluster.withSuperuser((admin) => admin.query('ALTER TABLE tenant_notes FORCE ROW LEVEL SECURITY'), scratch.cluster.facts.database);
      const forced = await runDoctorCli(verified(url));
      expect(forced.check('row-level-security')).toMatchObject({ status: 'pass', evidence: '1 table(s) with row-level security, each forced or owned by another role: their policies apply to app' });
    } finally {
      await scratch.drop();
    }
  });

  it('sslmode=require: warn on server identity, saying what verification would have found; exit 0', async () => {
    const run = await runDoctorCli({ DATABASE_URL: h.tls.url({ sslmode: 'require' }) });
    expect(run.code).toBe(0);
    expect(run.check('server-identity')).toMatchObject({
      status: 'warn',
      evidence: expect.stringMatching(/^NOT verified \(sslmode=require\).*verification would fail: UNABLE_TO_VERIFY_LEAF_SIGNATURE; the certificate names 127\.0\.0\.1$/),
      fix: expect.stringMatching(/remove sslmode=require/),
    });
    expect(run.check('configuration').status).toBe('warn'); // the module's own startup warning
    expect(run.check('tls').status).toBe('pass');
  });

  it('a certificate for another host name under verify-full: exit 1 on server identity', async () => {
    const run = await runDoctorCli(verified(h.wrongHost.url()));
    expect(run.code).toBe(1);
    expect(run.check('server-identity')).toMatchObject({ status: 'fail', evidence: expect.stringMatching(/does not name this host/) });
  });

  it('a wrong password: exit 1 on connection (authentication failed), the password given printed nowhere', async () => {
    const run = await runDoctorCli(verified(h.tls.url({}, { password: 'wrong-password-canary' })));
    expect(run.code).toBe(1);
    expect(run.check('connection')).toMatchObject({ status: 'fail', evidence: expect.stringMatching(/authentication failed.*28P01/), fix: expect.stringMatching(/user name and password/) });
  });

  it('an unencoded @ in the password: exit 2 asking for %40; the password tail is no host name in the text or the JSON', async () => {
    // WHATWG URL splits at the last @ and the old parser at the first: "cretTail" became the host name.
    const url = `postgresql://app:se@cretTail@127.0.0.1:${h.tls.facts.port}/app`;
    for (const args of [['doctor', '--json'], ['doctor']]) {
      const run = await runDoctorCli(verified(url), { args, secrets: ['cretTail', 'se@cret'] });
      expect(run.code).toBe(2);
      expect(run.stderr).toContain('more than one unencoded @: percent-encode @ in the user name or password as %40');
      if (args.includes('--json')) expect(run.json).toMatchObject({ verdict: 'error', problems: [expect.stringMatching(/as %40$/)], checks: [] });
    }
  });

  it('NODE_TLS_REJECT_UNAUTHORIZED=0: fail under sslmode=require; a configuration error (exit 2) under verify-full, as at startup', async () => {
    const weak = await runDoctorCli({ DATABASE_URL: h.tls.url({ sslmode: 'require' }), NODE_TLS_REJECT_UNAUTHORIZED: '0' });
    expect(weak.code).toBe(1);
    expect(weak.check('node-tls-reject-unauthorized').status).toBe('fail');
    const strict = await runDoctorCli(verified(h.tls.url(), { NODE_TLS_REJECT_UNAUTHORIZED: '0' }));
    expect(strict.code).toBe(2);
    expect(strict.json).toMatchObject({ verdict: 'error', problems: [expect.stringMatching(/NODE_TLS_REJECT_UNAUTHORIZED=0/)] });
  });

  it('an unknown URL parameter holding a secret is named by the module, its value printed nowhere', async () => {
    const run = await runDoctorCli(verified(h.tls.url({ sslpassword: 'canary-secret-0xf00d' })), { secrets: ['canary-secret-0xf00d'] });
    expect(run.code).toBe(0);
    expect(run.check('configuration')).toMatchObject({ status: 'warn', evidence: expect.stringMatching(/ignored: sslpassword/) });
  });

  describe('where the URL comes from', () => {
    let dir: string;
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'doctor-url-'));
    });
    afterAll(() => rm(dir, { recursive: true, force: true }));

    it('--url-stdin: the URL from standard input replaces DATABASE_URL', async () => {
      const run = await runDoctorCli(
        { DATABASE_URL: h.plain.url(), DATABASE_SSL_ROOT_CERT: h.caPath },
        { args: ['doctor', '--json', '--url-stdin'], stdin: `${h.tls.url()}\n` },
      );
      expect(run.code).toBe(0);
      expect(run.check('connection').evidence).toMatch(new RegExp(`^127\\.0\\.0\\.1:${h.tls.facts.port}/app as app`));
    });

    it('--url-stdin with nothing on standard input: exit 2', async () => {
      const run = await runDoctorCli({}, { args: ['doctor', '--url-stdin'] });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/read nothing from standard input/);
    });

    it('DATABASE_URL_FILE, as the module reads it', async () => {
      const file = join(dir, 'url');
      await writeFile(file, `${h.tls.url()}\n`);
      const run = await runDoctorCli({ DATABASE_URL_FILE: file, DATABASE_SSL_ROOT_CERT: h.caPath }, { secrets: [h.tls.facts.password] });
      expect(run.code).toBe(0);
      expect(run.check('connection').status).toBe('pass');
    });

    it('DATABASE_PASSWORD with a URL that has none: connects, the password printed nowhere', async () => {
      const bare = h.tls.url().replace(/:[^:@/]*@/, '@');
      const run = await runDoctorCli({ DATABASE_URL: bare, DATABASE_PASSWORD: h.tls.facts.password, DATABASE_SSL_ROOT_CERT: h.caPath }, { secrets: [h.tls.facts.password] });
      expect(run.code).toBe(0);
      expect(run.check('authentication').status).toBe('pass');
    });

    it('a URL as an argument: exit 2, refused without being echoed', async () => {
      const run = await runDoctorCli({}, { args: ['doctor', h.tls.url()], secrets: [h.tls.facts.password, h.tls.url()] });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/never give the URL as an argument/);
      expect(run.stdout).toBe('');
    });

    it('no URL at all: exit 2, naming DATABASE_URL', async () => {
      const run = await runDoctorCli({});
      expect(run.code).toBe(2);
      expect(run.json).toMatchObject({ verdict: 'error', checks: [] });
      expect(run.stderr).toMatch(/DATABASE_URL environment variable must be set/);
    });
  });

  it('usage errors exit 2: no command, an unknown option', async () => {
    for (const args of [[], ['doctor', '--verbose'], ['check']]) {
      const run = await runDoctorCli(verified(h.tls.url()), { args });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/Usage: nestjs-secure-postgres doctor/);
    }
  });

  it('a configuration error (channel_binding=sometimes): exit 2 with the module’s message', async () => {
    const run = await runDoctorCli(verified(h.tls.url({ channel_binding: 'sometimes' })));
    expect(run.code).toBe(2);
    expect(run.json?.problems).toEqual(['channel_binding in DATABASE_URL must be one of disable, prefer, require']);
  });

  it('channel_binding=require without TLS (the development plaintext opt-in): a configuration error, exit 2', async () => {
    const run = await runDoctorCli({ DATABASE_URL: h.plain.url({ sslmode: 'disable', channel_binding: 'require' }), APP_ENV: 'development', DATABASE_ALLOW_PLAINTEXT: 'true' });
    expect(run.code).toBe(2);
    expect(run.json?.problems).toEqual([expect.stringMatching(/^channel_binding in DATABASE_URL is require, which needs TLS/)]);
  });
});
