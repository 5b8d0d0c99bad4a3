import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { appendFile, chmod, chown, cp, mkdir, readFile, readdir, writeFile } from 'node:fs/promises';
import { createServer, isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { ServerAccount } from './postgres-binaries.js';
import { type CertificateAuthority, issueServerCertificate } from './tls-certificates.js';

const run = promisify(execFile);

/** Everything needed to reach and administer one cluster; serialisable so test workers can share it. */
export interface LocalClusterFacts {
  name: string;
  host: string;
  port: number;
  database: string;
  user: string;
  password: string;
  superuser: string;
  superuserPassword: string;
  /** PEM path of the CA that signed the server certificate; undefined for a plaintext cluster. */
  caPath?: string;
  /** Names the server certificate is valid for. */
  certificateHosts: string[];
  dataDir: string;
  pgCtl: string;
  account?: ServerAccount;
}

export interface ClusterSpec {
  name: string;
  /** Host names / IPs for the server certificate; `false` for a server with TLS off. */
  tls: string[] | false;
  /** Extra postgresql.conf settings. */
  settings?: Record<string, string | number>;
  /** Loopback address to listen on; default 127.0.0.1 (127.0.0.2, 127.0.0.3 … for a server of another name). */
  listen?: string;
  /**
   * Name of another cluster of the same startLocalPostgres call: this one is then made from a base
   * backup of it and runs as its hot standby, streaming over verified TLS (see streaming-standby.ts).
   */
  standbyOf?: string;
  /**
   * pg_hba.conf method for every role's connections (default scram-sha-256). `md5` only asks for md5
   * when the role's password is stored as md5: add `password_encryption: "'md5'"` to `settings`.
   */
  auth?: 'scram-sha-256' | 'md5' | 'password' | 'trust';
  /** Validity of the server certificate in days (default 365). */
  certificateDays?: number;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export function randomPassword(): string {
  return randomBytes(18).toString('base64url');
}

export async function chownTree(path: string, account: ServerAccount | undefined): Promise<void> {
  if (!account) return;
  await chown(path, account.uid, account.gid);
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    await chown(join(entry.parentPath, entry.name), account.uid, account.gid);
  }
}

/** initdb once; clusters are copies of this template (copying is ~30x faster than initdb). */
export async function initTemplate(
  initdb: string,
  dir: string,
  superuserPassword: string,
  account: ServerAccount | undefined,
): Promise<string> {
  const dataDir = join(dir, 'template');
  const pwFile = join(dir, 'superuser.pw');
  await writeFile(pwFile, `${superuserPassword}\n`, { mode: 0o600 });
  await chownTree(dir, account);
  await run(
    initdb,
    ['-D', dataDir, '-U', 'postgres', `--pwfile=${pwFile}`, '-A', 'scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'],
    { ...account },
  );
  return dataDir;
}

export class LocalPostgresCluster {
  constructor(readonly facts: LocalClusterFacts) {}

  get name(): string {
    return this.facts.name;
  }

  /** A DATABASE_URL for the application role; `params` become query parameters. */
  url(params: Record<string, string> = {}, overrides: { user?: string; password?: string; host?: string } = {}): string {
    const f = this.facts;
    const user = encodeURIComponent(overrides.user ?? f.user);
    const password = encodeURIComponent(overrides.password ?? f.password);
    const query = new URLSearchParams(params).toString();
    return `postgresql://${user}:${password}@${overrides.host ?? f.host}:${f.port}/${f.database}${query ? `?${query}` : ''}`;
  }

  /** Raw pg config for the app role (or the superuser), verify-full against the cluster's CA. */
  clientConfig(role: 'app' | 'superuser' = 'app'): pg.ClientConfig {
    const f = this.facts;
    return {
      host: f.host,
      port: f.port,
      user: role === 'app' ? f.user : f.superuser,
      password: role === 'app' ? f.password : f.superuserPassword,
      database: f.database,
      ssl: f.caPath ? { ca: readFileSync(f.caPath, 'utf8'), servername: f.certificateHosts.find((h) => !isIP(h)) } : false,
      connectionTimeoutMillis: 5000,
    };
  }

  /** A verified superuser connection for administration (terminate backends, hold locks, …). */
  async superuserClient(database = 'postgres'): Promise<pg.Client> {
    const client = new pg.Client({ ...this.clientConfig('superuser'), database, application_name: 'secure-pg-admin' });
    await client.connect();
    client.on('error', () => undefined); // an admin handle dying during a restart test is expected
    return client;
  }

  async withSuperuser<T>(fn: (client: pg.Client) => Promise<T>, database?: string): Promise<T> {
    const client = await this.superuserClient(database);
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private pgCtl(args: string[]): Promise<unknown> {
    return run(this.facts.pgCtl, [...args, '-D', this.facts.dataDir], { ...this.facts.account });
  }

  async start(): Promise<void> {
    const log = join(this.facts.dataDir, 'server.log');
    try {
      await this.pgCtl(['start', '-w', '-t', '30', '-l', log]);
    } catch (error) {
      // pg_ctl only says it did not start: the server's log says why.
      const tail = await readFile(log, 'utf8').then((text) => text.split('\n').slice(-15).join('\n'), () => '(no server log)');
      throw new Error(`${this.name} did not start: ${(error as Error).message}\n${tail}`, { cause: error });
    }
  }

  async stop(mode: 'smart' | 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.pgCtl(['stop', '-w', '-t', '30', '-m', mode]);
  }

  async restart(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    await this.stop(mode);
    await this.start();
  }

  /** Ends recovery on a standby: it becomes a primary that accepts writes (pg_ctl promote, waiting until it does). */
  async promote(): Promise<void> {
    await this.pgCtl(['promote', '-w', '-t', '30']);
  }

  async isRunning(): Promise<boolean> {
    return this.pgCtl(['status']).then(
      () => true,
      () => false,
    );
  }
}

/** Copies the template, configures TLS and listening, starts the server and creates the app role and database. */
export async function createCluster(
  spec: ClusterSpec,
  opts: {
    rootDir: string;
    templateDir: string;
    pgCtl: string;
    ca: CertificateAuthority;
    superuserPassword: string;
    account: ServerAccount | undefined;
  },
): Promise<LocalPostgresCluster> {
  const dataDir = join(opts.rootDir, spec.name);
  await cp(opts.templateDir, dataDir, { recursive: true });
  const port = await freePort();
  const settings: Record<string, string | number> = {
    listen_addresses: `'${spec.listen ?? '127.0.0.1'}'`,
    port,
    unix_socket_directories: "''",
    max_connections: 100,
    shared_buffers: "'32MB'",
    fsync: 'off',
    synchronous_commit: 'off',
    full_page_writes: 'off',
    password_encryption: "'scram-sha-256'",
    ssl: spec.tls ? 'on' : 'off',
    ...spec.settings,
  };
  let hba = '# written by local-postgres\n';
  if (spec.tls) {
    await mkdir(join(dataDir, 'tls'));
    await issueServerCertificate(opts.ca, join(dataDir, 'tls'), spec.tls, spec.certificateDays);
    Object.assign(settings, {
      ssl_cert_file: "'tls/server.crt'",
      ssl_key_file: "'tls/server.key'",
      ssl_min_protocol_version: "'TLSv1.2'",
    });
    hba += `hostssl all all 127.0.0.1/32 ${spec.auth ?? 'scram-sha-256'}\nhostssl replication all 127.0.0.1/32 scram-sha-256\nhostnossl all all 127.0.0.1/32 reject\n`;
  } else {
    hba += `host all all 127.0.0.1/32 ${spec.auth ?? 'scram-sha-256'}\nhost replication all 127.0.0.1/32 scram-sha-256\n`;
  }
  await writeFile(join(dataDir, 'pg_hba.conf'), hba);
  const conf = Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n');
  await appendFile(join(dataDir, 'postgresql.conf'), `\n# local-postgres\n${conf}\n`);
  await chownTree(dataDir, opts.account);
  if (spec.tls) await chmod(join(dataDir, 'tls', 'server.key'), 0o600);

  const cluster = new LocalPostgresCluster({
    name: spec.name,
    host: spec.listen ?? '127.0.0.1',
    port,
    database: 'app',
    user: 'app',
    password: randomPassword(),
    superuser: 'postgres',
    superuserPassword: opts.superuserPassword,
    caPath: spec.tls ? opts.ca.certPath : undefined,
    certificateHosts: spec.tls || [],
    dataDir,
    pgCtl: opts.pgCtl,
    account: opts.account,
  });
  await cluster.start();
  await cluster.withSuperuser(async (admin) => {
    const { user, password, database } = cluster.facts;
    // Identifiers and the password are generated above, never user input; format() keeps them quoted anyway.
    const { rows } = await admin.query('SELECT format($$CREATE ROLE %I LOGIN PASSWORD %L$$, $1::text, $2::text) AS ddl', [user, password]);
    await admin.query(rows[0].ddl);
    await admin.query(`CREATE DATABASE ${admin.escapeIdentifier(database)} OWNER ${admin.escapeIdentifier(user)}`);
  });
  return cluster;
}
