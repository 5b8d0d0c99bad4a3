import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { type LocalPostgresCluster, freePort } from '../../src/local-postgres/index.js';
import { resolveServerAccount } from '../../src/local-postgres/postgres-binaries.js';
import { type CertificateAuthority, issueServerCertificate } from '../../src/local-postgres/tls-certificates.js';
import { pgbouncerBinary } from './pgbouncer-binary.js';

export interface PgbouncerOptions {
  /** The server PgBouncer forwards to; its app role (and `users`) may log in through it. */
  upstream: LocalPostgresCluster;
  /** Signs PgBouncer's own (client-facing) certificate and verifies the server's under server TLS verify-full. */
  ca: CertificateAuthority;
  /** Default transaction. */
  poolMode?: 'transaction' | 'session';
  /** The pooler→server leg: verify-full (default) or plaintext. */
  serverTls?: 'verify-full' | 'disable';
  /** Server connections per user/database pair (default_pool_size). Default 5. */
  poolSize?: number;
  /** Startup parameters PgBouncer should accept and drop (what many hosted poolers configure). */
  ignoreStartupParameters?: string[];
  /** Host name PgBouncer dials, which the server certificate must name under verify-full. Default the upstream's host. */
  serverHost?: string;
  /** Names on PgBouncer's own certificate. Default localhost and 127.0.0.1. */
  certificateHosts?: string[];
  /** Extra [pgbouncer] settings. */
  settings?: Record<string, string | number>;
}

export interface Pgbouncer {
  host: string;
  port: number;
  /** e.g. `PgBouncer 1.18.0`. */
  version: string;
  /** DATABASE_URL of the upstream's app role and database, through PgBouncer. */
  url(params?: Record<string, string>): string;
  /** Everything PgBouncer printed so far. */
  log(): string;
  stop(): Promise<void>;
}

// Kills PgBouncer if the test process dies without stopping it (jest killed, a crash): it would
// otherwise keep its port and its server connections for ever.
const WATCHDOG = `
const [owner, child] = process.argv.slice(1).map(Number);
setInterval(() => {
  try { process.kill(owner, 0); return; } catch {}
  try { process.kill(child, 'SIGTERM'); } catch {}
  process.exit(0);
}, 250);`;

async function untilListening(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`pgbouncer exited with ${child.exitCode}:\n${output()}`);
    const open = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1', () => resolve(true));
      socket.on('error', () => resolve(false));
      socket.on('connect', () => socket.destroy());
    });
    if (open) return;
    if (Date.now() > deadline) throw new Error(`pgbouncer did not listen on ${port} within 15 s:\n${output()}`);
    await sleep(50);
  }
}

const quote = (value: string) => `"${value.replace(/"/g, '""')}"`;

/**
 * The real PgBouncer (found or installed by pgbouncerBinary), on a free loopback port, TLS towards
 * its clients with a certificate from `ca`, and by default TLS verify-full towards the server. Runs
 * as the server account when we are root (PgBouncer refuses to run as root). One per spec file.
 */
export async function startPgbouncer(options: PgbouncerOptions): Promise<Pgbouncer> {
  const binary = await pgbouncerBinary();
  const account = resolveServerAccount();
  const dir = await mkdtemp(join(tmpdir(), 'pgbouncer-'));
  const upstream = options.upstream.facts;
  const port = await freePort();
  const cert = await issueServerCertificate(options.ca, dir, options.certificateHosts ?? ['localhost', '127.0.0.1']);
  const serverTls = options.serverTls ?? 'verify-full';
  const settings: Record<string, string | number> = {
    listen_addr: '127.0.0.1',
    listen_port: port,
    unix_socket_dir: '',
    pool_mode: options.poolMode ?? 'transaction',
    default_pool_size: options.poolSize ?? 5,
    max_client_conn: 1000,
    auth_type: 'scram-sha-256',
    auth_file: join(dir, 'userlist.txt'),
    client_tls_sslmode: 'require',
    client_tls_key_file: cert.keyPath,
    client_tls_cert_file: cert.certPath,
    server_tls_sslmode: serverTls,
    ...(serverTls === 'verify-full' ? { server_tls_ca_file: options.ca.certPath } : {}),
    ignore_startup_parameters: (options.ignoreStartupParameters ?? []).join(','),
    pidfile: join(dir, 'pgbouncer.pid'),
    server_login_retry: 1,
    ...options.settings,
  };
  const databases = `* = host=${options.serverHost ?? upstream.host} port=${upstream.port}`;
  const ini = `[databases]\n${databases}\n\n[pgbouncer]\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`;
  // PgBouncer logs in to the server with the client's own credentials (SCRAM needs the password here).
  await writeFile(join(dir, 'userlist.txt'), `${quote(upstream.user)} ${quote(upstream.password)}\n`, { mode: 0o600 });
  await writeFile(join(dir, 'pgbouncer.ini'), ini, { mode: 0o600 });
  await chmod(dir, 0o700);
  if (account) {
    for (const entry of ['', ...(await readdir(dir))]) await chown(join(dir, entry), account.uid, account.gid);
  }
  await chmod(cert.keyPath, 0o600);

  const child = spawn(binary, [join(dir, 'pgbouncer.ini')], { ...account, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const watchdog = spawn(process.execPath, ['-e', WATCHDOG, String(process.pid), String(child.pid)], { detached: true, stdio: 'ignore' });
  watchdog.unref();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      if (child.exitCode === null) child.kill('SIGTERM'); // SIGTERM: immediate shutdown
      await Promise.race([exited, sleep(5000, undefined, { ref: false })]);
      if (child.exitCode === null) child.kill('SIGKILL');
      if (watchdog.pid !== undefined) process.kill(watchdog.pid);
      await rm(dir, { recursive: true, force: true });
    })());
  try {
    await untilListening(port, child, () => output);
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    host: '127.0.0.1',
    port,
    version: execFileSync(binary, ['--version']).toString().split('\n')[0].trim(),
    url(params = {}) {
      const query = new URLSearchParams(params).toString();
      return `postgresql://${encodeURIComponent(upstream.user)}:${encodeURIComponent(upstream.password)}@127.0.0.1:${port}/${upstream.database}${query ? `?${query}` : ''}`;
    },
    log: () => output,
    stop,
  };
}
