import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { harness } from '../support/harness.js';

const h = harness();
const APP = join(import.meta.dirname, 'quick-start-app.mjs');
const SCAFFOLD = join(import.meta.dirname, 'scaffold-app.mjs');

/** Runs the quick-start app (or another) to its exit; everything it printed, stdout and stderr together. */
function runQuickStart(env: Record<string, string>, app = APP): Promise<{ code: number | null; output: string }> {
  const child = spawn(process.execPath, [app], {
    cwd: tmpdir(), // no .env of this repository
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_STARTUP_RETRIES: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  return new Promise((resolve) => child.once('close', (code) => { clearTimeout(timer); resolve({ code, output }); }));
}

/**
 * Nest's ExceptionHandler and Node's unhandled-rejection report print an error with its `cause`:
 * in production the error that leaves the module must carry nothing a log should not show.
 */
describe('a quick-start app that fails to start in production prints no driver detail', () => {
  const suffix = randomBytes(4).toString('hex');
  const user = `quickstart_user_${suffix}`;
  const password = `Quickstart-Secret-${suffix}`;
  const database = `quickstart_db_${suffix}`;
  const url = (cluster: typeof h.tls, overrides: { password?: string; database?: string } = {}) =>
    `postgresql://${user}:${overrides.password ?? password}@${cluster.facts.host}:${cluster.facts.port}/${overrides.database ?? database}`;

  beforeAll(async () => {
    await h.tls.withSuperuser(async (admin) => {
      await admin.query(`CREATE ROLE ${user} LOGIN PASSWORD '${password}'`);
      await admin.query(`CREATE DATABASE ${database} OWNER ${user}`);
    });
  });

  afterAll(async () => {
    await h.tls.withSuperuser(async (admin) => {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.query(`DROP ROLE IF EXISTS ${user}`);
    });
  });

  const secrets = () => [user, password, database, `missing_${database}`, 'Wrong-Password', ...h.wrongHost.facts.certificateHosts];

  it.each([
    ['a database that does not exist', () => url(h.tls, { database: `missing_${database}` }), 'DB_QUERY_FAILED'],
    ['a wrong password', () => url(h.tls, { password: `Wrong-Password-${suffix}` }), 'DB_AUTHENTICATION_FAILED'],
    ['a certificate for another host', () => url(h.wrongHost), 'DB_TLS_VERIFICATION_FAILED'],
  ])('%s: exit 1, the code and the fix, and none of the names, the user or the password', async (_case, dsn, code) => {
    const run = await runQuickStart({ APP_ENV: 'production', DATABASE_URL: dsn(), DATABASE_SSL_ROOT_CERT: h.caPath });
    expect(run.code).not.toBe(0);
    expect(run.output).toContain(`Database startup failed [${code}]`);
    for (const secret of secrets()) expect(run.output).not.toContain(secret);
  });

  it('in development the same failure keeps the driver detail, for the developer', async () => {
    const run = await runQuickStart({ APP_ENV: 'development', DATABASE_URL: url(h.tls, { database: `missing_${database}` }), DATABASE_SSL_ROOT_CERT: h.caPath });
    expect(run.code).not.toBe(0);
    expect(run.output).toContain(`missing_${database}`);
  });
});

/** `nest new`'s main.ts with SecureDatabaseLogger and runBootstrap: a failed startup is the module's one line. */
describe("the scaffold's main.ts with SecureDatabaseLogger and runBootstrap", () => {
  const missing = () => `postgresql://nobody:Scaffold-Secret@${h.tls.facts.host}:${h.tls.facts.port}/nothing_here`;
  const lines = (output: string) => output.split('\n').filter((line) => line.trim() !== '' && !/ExperimentalWarning|--trace-warnings/.test(line));

  it('prints one line for a failed database startup: the code and the fix, nothing from Nest about it', async () => {
    const run = await runQuickStart({ APP_ENV: 'production', DATABASE_URL: missing(), DATABASE_SSL_ROOT_CERT: h.caPath }, SCAFFOLD);
    expect(run.code).not.toBe(0);
    const errors = lines(run.output).filter((line) => /ERROR|Error|error/.test(line));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('Database startup failed [DB_AUTHENTICATION_FAILED]');
    expect(run.output).not.toContain('ExceptionHandler');
    expect(run.output).not.toContain('    at '); // no stack
    expect(run.output).not.toContain('Scaffold-Secret');
  });

  it('a configuration error (thrown while Nest builds the module) is one line too', async () => {
    const run = await runQuickStart({ APP_ENV: 'production', DATABASE_URL: 'mysql://nobody@db/app' }, SCAFFOLD);
    expect(run.code).toBe(1);
    const errors = lines(run.output).filter((line) => /ERROR|Error|error/.test(line));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain('Database startup failed [DB_CONFIGURATION]');
  });

  it('as generated, the same failure is followed by the error again with its stack (what the two changes remove)', async () => {
    const run = await runQuickStart({ APP_ENV: 'production', DATABASE_URL: missing(), DATABASE_SSL_ROOT_CERT: h.caPath, SCAFFOLD: 'plain' }, SCAFFOLD);
    expect(run.code).not.toBe(0);
    expect(run.output).toContain('Database startup failed [DB_AUTHENTICATION_FAILED]');
    expect(run.output).toContain('    at ');
  });
});
