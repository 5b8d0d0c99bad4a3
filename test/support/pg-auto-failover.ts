import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { appendFile, chmod, cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { chownTree, freePort, randomPassword } from '../../src/local-postgres/local-postgres-cluster.js';
import { resolveServerAccount } from '../../src/local-postgres/postgres-binaries.js';
import { createCertificateAuthority, issueServerCertificate } from '../../src/local-postgres/tls-certificates.js';
import { debianTool } from './debian-package.js';

const run = promisify(execFile);

/** Debian 12 builds pg_auto_failover 2.0 for its PostgreSQL 15; the CLI package holds pg_autoctl. */
const PACKAGES = ['postgresql-15-auto-failover', 'pg-auto-failover-cli'];
const PG_AUTOCTL = '/usr/bin/pg_autoctl';
// Debian's default socket directory: pg_autoctl talks to its own server there.
const SOCKET_DIR = '/var/run/postgresql';

interface Installed {
  pgAutoctl: string;
  /** bin directory of the PostgreSQL major the pgautofailover extension is built for. */
  binDir: string;
}

function findInstalled(): Installed | undefined {
  if (!existsSync(PG_AUTOCTL) || !existsSync('/usr/lib/postgresql')) return undefined;
  const major = readdirSync('/usr/lib/postgresql')
    .filter((m) => /^\d+$/.test(m) && existsSync(`/usr/lib/postgresql/${m}/lib/pgautofailover.so`))
    .sort((a, b) => Number(b) - Number(a))[0];
  return major ? { pgAutoctl: PG_AUTOCTL, binDir: `/usr/lib/postgresql/${major}/bin` } : undefined;
}

/** pg_autoctl and the PostgreSQL it manages: installed with apt-get when root, else a failure saying what to install. */
export function pgAutoFailoverInstall(): Promise<Installed> {
  return debianTool({
    name: 'pg_auto_failover',
    packages: PACKAGES,
    find: findInstalled,
    howToInstall: `install ${PACKAGES.join(' and ')} (Debian/Ubuntu, for PostgreSQL 15; see https://pg-auto-failover.readthedocs.io) and run the spec again`,
  });
}

export interface FormationNode {
  name: string;
  /** The address other nodes, the monitor and the URL name it by; its certificate names only this. */
  host: string;
  port: number;
  dataDir: string;
  running: boolean;
}

/** A node's row in the monitor (pgautofailover.node). */
export interface NodeState {
  name: string;
  reported: string;
  assigned: string;
}

// Fast detection for a test run; the defaults (5 s checks, 20 s unhealthy, 30 s demote timeout) are
// production's safety margins. primary_demote_timeout is how long the monitor waits for an
// unreachable primary to demote itself before promoting the standby: the split-brain guard.
export const MONITOR_SETTINGS = {
  'pgautofailover.health_check_period': 1000,
  'pgautofailover.health_check_timeout': 1000,
  'pgautofailover.health_check_max_retries': 1,
  'pgautofailover.health_check_retry_delay': 500,
  'pgautofailover.node_considered_unhealthy_timeout': 2000,
  'pgautofailover.primary_demote_timeout': 5000,
};

const SERVER_SETTINGS = {
  // pg_autoctl sizes shared_buffers from the machine's memory (6 GB here); postgresql.auto.conf is read last.
  shared_buffers: "'32MB'",
  max_connections: 60,
  fsync: 'off',
  // pg_rewind (a demoted primary rejoining) needs both; without them pg_autoctl falls back to a base backup.
  full_page_writes: 'on',
  wal_log_hints: 'on',
};

export interface Formation {
  monitor: { port: number; dataDir: string };
  /** Three data nodes: a primary and two standbys, so that number_sync_standbys can be 1. */
  nodes: FormationNode[];
  /** PEM of the CA that signed every certificate. */
  caPem: string;
  caPath: string;
  app: { user: string; password: string; database: string };
  /** `pg_autoctl show uri --formation default`: the URL pg_auto_failover hands out (no credentials). */
  formationUri(): Promise<string>;
  /** The formation URL with the app's user and password in it. */
  appUrl(): Promise<string>;
  /** Every data node's row in the monitor. */
  states(): Promise<NodeState[]>;
  /** Waits until the monitor reports (and assigned) these states, e.g. { node1: 'primary', node2: 'secondary' }. */
  waitForStates(wanted: Record<string, string>, timeoutMs?: number): Promise<void>;
  /** The node the monitor made primary (or wait_primary: no standby to wait for), once it reports so. */
  primary(): Promise<FormationNode>;
  /** Waits until every running node has reached the state the monitor assigned it, one of them primary; returns that one. */
  settled(timeoutMs?: number): Promise<FormationNode>;
  /** `pg_autoctl perform failover`: returns when the monitor has finished it. */
  performFailover(): Promise<void>;
  /** SIGKILL to the node's postmaster only: its pg_autoctl keeper is still running. */
  killPostmaster(node: FormationNode): Promise<void>;
  /** SIGKILL to the node's pg_autoctl and postgres (the machine is gone); resolves once every process of it has exited. */
  crashNode(node: FormationNode): Promise<void>;
  /** SIGTERM to the node's pg_autoctl, as `pg_autoctl stop` sends: it stops its postgres (fast) and exits. */
  stopNode(node: FormationNode): Promise<void>;
  /** `pg_autoctl run` again on a node's data directory. */
  startNode(node: FormationNode): void;
  /** SIGKILL to the monitor's pg_autoctl and postgres; resolves once every process of it has exited. */
  crashMonitor(): Promise<void>;
  startMonitor(): Promise<void>;
  /** A superuser connection over the node's Unix socket (trust for the OS account there only). */
  withSuperuser<T>(node: { port: number }, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T>;
  /** The last lines each pg_autoctl printed, for a failure message. */
  logTails(lines?: number): string;
  /** Stops every process (SIGTERM, then SIGKILL) and deletes the directory. Idempotent. */
  stop(): Promise<void>;
}

// A watchdog, as for local-postgres: if the test process dies, the process groups it started (each
// pg_autoctl with its postgres) are killed and the directory removed.
const REAPER_SOURCE = `
const { readFileSync, rmSync } = require('node:fs');
const [owner, groupsFile, rootDir] = [Number(process.argv[1]), process.argv[2], process.argv[3]];
setInterval(() => {
  try { process.kill(owner, 0); return; } catch {}
  let groups = [];
  try { groups = readFileSync(groupsFile, 'utf8').split('\\n').filter(Boolean).map(Number); } catch {}
  for (const group of groups) { try { process.kill(-group, 'SIGKILL'); } catch {} }
  setTimeout(() => { rmSync(rootDir, { recursive: true, force: true }); process.exit(0); }, 500);
}, 250);
`;

/** Live (not zombie) processes from /proc with their parent and process group. */
function liveProcesses(): Array<{ pid: number; ppid: number; pgrp: number }> {
  return readdirSync('/proc')
    .filter((entry) => /^\d+$/.test(entry))
    .flatMap((pid) => {
      try {
        // pid (comm) state ppid pgrp …: comm may hold spaces and parentheses, so read after the last ')'.
        const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
        const [state, ppid, pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return state === 'Z' ? [] : [{ pid: Number(pid), ppid: Number(ppid), pgrp: Number(pgrp) }];
      } catch {
        return []; // exited meanwhile
      }
    });
}

function pgHba(): string {
  // Loopback TCP only over TLS with SCRAM (every role, replication included); the socket stays trust,
  // for pg_autoctl's own connections and the spec's administration as the server's OS account.
  return [
    'local all all trust',
    'local replication all trust',
    'hostssl all all 127.0.0.0/8 scram-sha-256',
    'hostssl replication all 127.0.0.0/8 scram-sha-256',
    'hostnossl all all 0.0.0.0/0 reject',
    '',
  ].join('\n');
}

/**
 * A pg_auto_failover formation of its own: a monitor (localhost) and three data nodes (127.0.0.2,
 * 127.0.0.3, 127.0.0.4; number_sync_standbys 1), each with its own certificate from one fresh CA
 * naming only its own host, verify-full between all of them, SCRAM everywhere over TCP, as the
 * `postgres` OS account when we are root. The app role and database are created on the primary
 * (replicated to the standbys). ~50 s.
 */
export async function startFormation(): Promise<Formation> {
  const installed = await pgAutoFailoverInstall();
  const account = resolveServerAccount();
  const rootDir = await mkdtemp(join(tmpdir(), 'secure-pg-ha-'));
  await chmod(rootDir, 0o755); // the server account must reach everything in here
  const groupsFile = join(rootDir, 'process-groups');
  await writeFile(groupsFile, '');
  const reaper = spawn(process.execPath, ['-e', REAPER_SOURCE, String(process.pid), groupsFile, rootDir], { detached: true, stdio: 'ignore' });
  reaper.unref();

  const passwords = { autoctl_node: randomPassword(), pgautofailover_replicator: randomPassword(), pgautofailover_monitor: randomPassword() };
  const app = { user: 'app', password: randomPassword(), database: 'app' };
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: rootDir,
    XDG_CONFIG_HOME: join(rootDir, 'config'),
    XDG_DATA_HOME: join(rootDir, 'data'),
    XDG_RUNTIME_DIR: join(rootDir, 'run'),
    // pg_autoctl, pg_basebackup, the walreceiver and the monitor's health checks all read it.
    PGPASSFILE: join(rootDir, 'pgpass'),
  };
  for (const dir of [env.XDG_CONFIG_HOME, env.XDG_DATA_HOME, env.XDG_RUNTIME_DIR]) await mkdir(dir, { mode: 0o700 });
  await writeFile(env.PGPASSFILE, Object.entries(passwords).map(([role, password]) => `*:*:*:${role}:${password}\n`).join(''), { mode: 0o600 });

  const ca = await createCertificateAuthority(rootDir, 'ha-ca');
  const monitorPort = await freePort();
  const nodes: FormationNode[] = [];
  for (const n of [1, 2, 3]) nodes.push({ name: `node${n}`, host: `127.0.0.${n + 1}`, port: await freePort(), dataDir: join(rootDir, `node${n}`), running: false });
  const monitorDir = join(rootDir, 'monitor');
  const tls = async (name: string, hosts: string[]) => {
    const dir = join(rootDir, `${name}-tls`);
    await mkdir(dir);
    return issueServerCertificate(ca, dir, hosts);
  };
  const [monitorCert, ...nodeCerts] = await Promise.all([tls('monitor', ['localhost', '127.0.0.1']), ...nodes.map((n) => tls(n.name, [n.host]))]);

  // One initdb, copied for the monitor and the first node (the second is a base backup of the first).
  const template = join(rootDir, 'template');
  await chownTree(rootDir, account);
  await run(join(installed.binDir, 'initdb'), ['-D', template, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync', '--no-instructions'], {
    ...account,
    env,
  });
  await writeFile(join(template, 'pg_hba.conf'), pgHba());
  await appendFile(join(template, 'postgresql.auto.conf'), Object.entries(SERVER_SETTINGS).map(([k, v]) => `${k} = ${v}\n`).join(''));
  await cp(template, monitorDir, { recursive: true });
  await appendFile(join(monitorDir, 'postgresql.auto.conf'), Object.entries(MONITOR_SETTINGS).map(([k, v]) => `${k} = ${v}\n`).join(''));
  await cp(template, nodes[0].dataDir, { recursive: true });
  await rm(template, { recursive: true });
  for (const file of [monitorCert, ...nodeCerts]) await chmod(file.keyPath, 0o600);
  await chownTree(rootDir, account);

  const groups = new Map<string, ChildProcess>();
  const logs = new Map<string, string>();
  const launch = (name: string, args: string[]) => {
    const child = spawn(installed.pgAutoctl, args, { ...account, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    // One log per launch: a restarted node's first lines say why it does (not) serve.
    const key = `${name} (${args.slice(0, 2).join(' ')}, launch ${[...logs.keys()].filter((k) => k.startsWith(`${name} `)).length + 1})`;
    let log = '';
    const keep = (chunk: Buffer) => {
      log = (log + chunk.toString()).slice(-20_000);
      logs.set(key, log);
    };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    groups.set(name, child);
    void appendFile(groupsFile, `${child.pid}\n`);
    child.once('exit', () => groups.get(name) === child && groups.delete(name));
  };
  const tlsArgs = (cert: { certPath: string; keyPath: string }) => [
    '--ssl-mode', 'verify-full', '--ssl-ca-file', ca.certPath, '--server-cert', cert.certPath, '--server-key', cert.keyPath,
  ];
  const monitorUrl = `postgres://autoctl_node@localhost:${monitorPort}/pg_auto_failover?sslmode=verify-full&sslrootcert=${ca.certPath}`;

  const withSuperuser = async <T>(server: { port: number }, database: string, fn: (client: pg.Client) => Promise<T>): Promise<T> => {
    const client = new pg.Client({ host: SOCKET_DIR, port: server.port, user: 'postgres', database, connectionTimeoutMillis: 2000 });
    client.on('error', () => undefined);
    await client.connect();
    try {
      return await fn(client);
    } finally {
      await client.end().catch(() => undefined);
    }
  };
  const monitor = { port: monitorPort, dataDir: monitorDir };

  const logTails = (lines = 12) => [...logs].map(([name, log]) => `--- ${name}\n${log.split('\n').slice(-lines).join('\n')}`).join('\n');

  /** Retries `fn` until it returns a value other than undefined, or fails with the log tails. */
  const until = async <T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> => {
    const deadline = performance.now() + timeoutMs;
    let last: unknown;
    for (;;) {
      try {
        const value = await fn();
        if (value !== undefined) return value;
      } catch (error) {
        last = error;
      }
      if (performance.now() > deadline) {
        throw new Error(`pg_auto_failover: ${what} did not happen within ${timeoutMs} ms${last ? ` (last error: ${(last as Error).message})` : ''}\n${logTails()}`);
      }
      await sleep(100);
    }
  };

  // Every process of a server: its pg_autoctl's process group, the postmaster (a keeper that restarted
  // it may have started it elsewhere) and its children, which PostgreSQL puts in sessions of their own. A restart on the same data directory fails
  // while any of them still holds the old server's shared memory.
  const killServer = async (child: ChildProcess | undefined, dataDir: string) => {
    if (!child?.pid) return;
    const postmaster = await readFile(join(dataDir, 'postmaster.pid'), 'utf8').then((text) => Number(text.split('\n')[0]), () => -1);
    const doomed = liveProcesses().filter((p) => p.pgrp === child.pid || p.pid === postmaster || p.ppid === postmaster).map((p) => p.pid);
    if (!doomed.includes(postmaster)) throw new Error(`${dataDir}: no running postmaster to kill (postmaster.pid says ${postmaster})`);
    for (const pid of doomed) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // exited meanwhile
      }
    }
    await until(`the processes of ${dataDir} exiting`, 10_000, async () => {
      const alive = new Set(liveProcesses().map((p) => p.pid));
      return doomed.some((pid) => alive.has(pid)) ? undefined : true;
    });
  };

  /** SIGTERM to a pg_autoctl: it stops its postgres (fast) and exits; SIGKILL to its group after 15 s. */
  const terminate = async (child: ChildProcess | undefined) => {
    if (!child?.pid || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      process.kill(-child.pid, 'SIGTERM');
    } catch {
      return;
    }
    if ((await Promise.race([exited.then(() => true), sleep(15_000, undefined, { ref: false }).then(() => false)])) === false) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
    }
  };

  const states = () =>
    withSuperuser(monitor, 'pg_auto_failover', async (client) =>
      (
        await client.query<NodeState>(
          'SELECT nodename AS name, reportedstate::text AS reported, goalstate::text AS assigned FROM pgautofailover.node ORDER BY nodeid',
        )
      ).rows,
    );
  const waitForStates = (wanted: Record<string, string>, timeoutMs = 60_000) =>
    until(`the states ${JSON.stringify(wanted)}`, timeoutMs, async () => {
      const now = await states();
      return Object.entries(wanted).every(([name, state]) => now.some((n) => n.name === name && n.reported === state && n.assigned === state)) || undefined;
    }).then(() => undefined);
  const autoctl = (args: string[]) => run(installed.pgAutoctl, args, { ...account, env, maxBuffer: 4 * 1024 * 1024 });

  let stopped = false;
  const formation: Formation = {
    monitor,
    nodes,
    caPem: await readFile(ca.certPath, 'utf8'),
    caPath: ca.certPath,
    app,
    async formationUri() {
      const { stdout } = await autoctl(['show', 'uri', '--formation', 'default', '--json', '--pgdata', monitorDir]);
      return (JSON.parse(stdout) as { default: string }).default;
    },
    async appUrl() {
      const uri = await formation.formationUri();
      return uri.replace(/^postgres(ql)?:\/\//, (scheme) => `${scheme}${app.user}:${encodeURIComponent(app.password)}@`);
    },
    states,
    waitForStates,
    async primary() {
      const now = await states();
      // By the monitor's decision (a dead primary keeps its last reported state), once the node has reached it.
      const name = now.find((n) => (n.assigned === 'primary' || n.assigned === 'wait_primary') && n.reported === n.assigned)?.name;
      const node = nodes.find((n) => n.name === name);
      if (!node) throw new Error(`no primary in ${JSON.stringify(now)}`);
      return node;
    },
    settled: (timeoutMs = 60_000) =>
      until('the formation settling', timeoutMs, async () => {
        const now = await states();
        const running = now.filter((n) => nodes.find((node) => node.name === n.name)?.running);
        const stable = running.every((n) => n.reported === n.assigned && ['primary', 'wait_primary', 'secondary'].includes(n.reported));
        const primaries = running.filter((n) => n.reported === 'primary' || n.reported === 'wait_primary');
        return stable && primaries.length === 1 ? nodes.find((node) => node.name === primaries[0].name) : undefined;
      }),
    async performFailover() {
      await autoctl(['perform', 'failover', '--pgdata', monitorDir, '--wait', '60']);
    },
    async killPostmaster(node) {
      const pid = Number((await readFile(join(node.dataDir, 'postmaster.pid'), 'utf8')).split('\n')[0]);
      process.kill(pid, 'SIGKILL');
    },
    async crashNode(node) {
      node.running = false;
      await killServer(groups.get(node.name), node.dataDir);
    },
    async stopNode(node) {
      node.running = false;
      await terminate(groups.get(node.name));
    },
    startNode(node) {
      launch(node.name, ['run', '--pgdata', node.dataDir]);
      node.running = true;
    },
    crashMonitor: () => killServer(groups.get('monitor'), monitorDir),
    async startMonitor() {
      launch('monitor', ['run', '--pgdata', monitorDir]);
      await until('the monitor accepting connections', 30_000, () => withSuperuser(monitor, 'pg_auto_failover', async () => true));
    },
    withSuperuser,
    logTails,
    async stop() {
      if (stopped) return;
      stopped = true;
      const children = [...groups.values()];
      await Promise.all(children.map(terminate));
      // A server process that outlived its pg_autoctl would keep the pipes (and jest) open.
      for (const child of children) for (const stream of [child.stdout, child.stderr]) stream?.destroy();
      await rm(rootDir, { recursive: true, force: true });
      try {
        process.kill(reaper.pid!);
      } catch {
        // gone
      }
    },
  };

  try {
    // The monitor: created on the copied data directory, then serving (--run).
    launch('monitor', [
      'create', 'monitor', '--pgdata', monitorDir, '--pgport', String(monitorPort), '--hostname', 'localhost',
      '--auth', 'scram-sha-256', ...tlsArgs(monitorCert), '--pgctl', join(installed.binDir, 'pg_ctl'), '--run',
    ]);
    await until('the monitor accepting connections', 60_000, () =>
      withSuperuser(monitor, 'pg_auto_failover', async (client) => {
        const { rows } = await client.query("SELECT 1 FROM pg_roles WHERE rolname = 'autoctl_node'");
        if (!rows.length) return undefined;
        await client.query(`ALTER ROLE autoctl_node PASSWORD ${client.escapeLiteral(passwords.autoctl_node)}`);
        return true;
      }),
    );
    const createNode = (node: FormationNode, cert: { certPath: string; keyPath: string }) => {
      launch(node.name, [
        'create', 'postgres', '--pgdata', node.dataDir, '--pgport', String(node.port), '--hostname', node.host, '--name', node.name,
        '--dbname', app.database, '--auth', 'scram-sha-256', ...tlsArgs(cert), '--pgctl', join(installed.binDir, 'pg_ctl'),
        '--monitor', monitorUrl, '--run',
      ]);
      node.running = true;
    };
    createNode(nodes[0], nodeCerts[0]);
    await waitForStates({ node1: 'single' });
    // Passwords for the roles pg_autoctl created, and the app's role, on the primary: the standby gets them by replication.
    await withSuperuser(nodes[0], 'postgres', async (client) => {
      for (const role of ['pgautofailover_replicator', 'pgautofailover_monitor'] as const) {
        await client.query(`ALTER ROLE ${role} PASSWORD ${client.escapeLiteral(passwords[role])}`);
      }
      await client.query(`CREATE ROLE ${client.escapeIdentifier(app.user)} LOGIN PASSWORD ${client.escapeLiteral(app.password)}`);
      await client.query(`ALTER DATABASE ${client.escapeIdentifier(app.database)} OWNER TO ${client.escapeIdentifier(app.user)}`);
    });
    for (const [i, node] of nodes.entries()) {
      if (i === 0) continue;
      createNode(node, nodeCerts[i]);
      // pg_basebackup waits for a checkpoint, which the primary would otherwise spread over minutes.
      await until(`${node.name} joining as a secondary`, 90_000, async () => {
        const now = await states();
        if (now.some((n) => n.name === node.name && n.assigned === 'catchingup')) await withSuperuser(nodes[0], 'postgres', (c) => c.query('CHECKPOINT'));
        return now.some((n) => n.name === node.name && n.reported === 'secondary' && n.assigned === 'secondary') || undefined;
      });
    }
    // Durability over availability: a commit waits for a standby (ANY 1), whatever state the monitor
    // assigns the primary. With the default 0 the primary goes asynchronous (wait_primary) whenever
    // the monitor sees no healthy standby, which a planned failover can briefly make it believe.
    // (The monitor's function: Debian's pg_autoctl 2.0 rejects every value of `set formation number-sync-standbys`.)
    await withSuperuser(monitor, 'pg_auto_failover', (c) => c.query("SELECT pgautofailover.set_formation_number_sync_standbys('default', 1)"));
    await waitForStates({ node1: 'primary', node2: 'secondary', node3: 'secondary' });
    return formation;
  } catch (error) {
    await formation.stop();
    throw error;
  }
}
