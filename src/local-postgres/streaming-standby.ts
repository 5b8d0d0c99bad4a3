import { isIP } from 'node:net';
import { appendFile, chmod, cp, mkdir, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { type ClusterSpec, LocalPostgresCluster, chownTree, freePort } from './local-postgres-cluster.js';
import type { ServerAccount } from './postgres-binaries.js';
import { type CertificateAuthority, issueServerCertificate } from './tls-certificates.js';

// Left out of the copy, as pg_basebackup leaves them out: the running primary's own state.
const NOT_COPIED = new Set(['postmaster.pid', 'postmaster.opts', 'server.log', 'standby.signal']);
const EMPTIED = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp', 'pg_dynshmem', 'pg_notify', 'pg_serial', 'pg_snapshots', 'pg_subtrans']);

/**
 * A hot standby of `primary`, made as pg_basebackup -R --checkpoint=fast would make it, with SQL
 * instead (the embedded binaries ship no pg_basebackup): a physical replication slot, pg_backup_start
 * with a fast checkpoint, a copy of the data directory, pg_backup_stop's backup_label, standby.signal
 * and primary_conninfo (verify-full against the primary's certificate). It listens on `spec.listen`
 * with a certificate of its own for `spec.tls`, so each server is verified against its own name.
 */
export async function createStandby(
  spec: ClusterSpec,
  primary: LocalPostgresCluster,
  opts: { rootDir: string; ca: CertificateAuthority; account: ServerAccount | undefined },
): Promise<LocalPostgresCluster> {
  const p = primary.facts;
  if (!p.caPath || !spec.tls) throw new Error('a standby streams over TLS: give both clusters certificates');
  const dataDir = join(opts.rootDir, spec.name);
  const slot = spec.name.replace(/\W/g, '_');
  await primary.withSuperuser(async (admin) => {
    await admin.query('SELECT pg_catalog.pg_create_physical_replication_slot($1, true)', [slot]);
    // PostgreSQL 15 renamed pg_start_backup/pg_stop_backup (14 takes a third argument: false = non-exclusive).
    const { rows: version } = await admin.query<{ num: number }>("SELECT pg_catalog.current_setting('server_version_num')::int AS num");
    const [start, stop] = version[0].num >= 150000 ? ['pg_backup_start($1, true)', 'pg_backup_stop(false)'] : ['pg_start_backup($1, true, false)', 'pg_stop_backup(false)'];
    await admin.query(`SELECT pg_catalog.${start}`, [`standby ${spec.name}`]);
    let stopped = false;
    try {
      await cp(p.dataDir, dataDir, {
        recursive: true,
        filter: (source) => {
          const relative = source.slice(p.dataDir.length + 1);
          const [top, ...below] = relative.split('/');
          if (NOT_COPIED.has(relative)) return false;
          return !(EMPTIED.has(top) && below.length > 0 && basename(source) !== 'archive_status');
        },
      });
      const { rows } = await admin.query<{ labelfile: string; spcmapfile: string }>(`SELECT labelfile, spcmapfile FROM pg_catalog.${stop}`);
      stopped = true;
      await writeFile(join(dataDir, 'backup_label'), rows[0].labelfile);
      if (rows[0].spcmapfile) await writeFile(join(dataDir, 'tablespace_map'), rows[0].spcmapfile);
    } finally {
      if (!stopped) await admin.query(`SELECT pg_catalog.${stop}`).catch(() => undefined);
    }
  });
  await mkdir(join(dataDir, 'pg_wal', 'archive_status'), { recursive: true });
  await writeFile(join(dataDir, 'standby.signal'), '');
  await rm(join(dataDir, 'tls'), { recursive: true, force: true });
  await mkdir(join(dataDir, 'tls'));
  await issueServerCertificate(opts.ca, join(dataDir, 'tls'), spec.tls);
  const port = await freePort();
  // A name over an IP when the certificate has one: libpq before 15 matches no IP address SANs.
  const primaryHost = p.certificateHosts.find((h) => !isIP(h)) ?? (p.certificateHosts.includes(p.host) ? p.host : p.certificateHosts[0]);
  const conninfo = [
    `host=${primaryHost}`,
    `hostaddr=${p.host}`,
    `port=${p.port}`,
    `user=${p.superuser}`,
    `password=${p.superuserPassword}`,
    'sslmode=verify-full',
    `sslrootcert=${p.caPath}`,
    // No client certificate; and not the one libpq would look for under the HOME the server inherited.
    `sslcert=${join(dataDir, 'no-client.crt')}`,
    `sslkey=${join(dataDir, 'no-client.key')}`,
    `application_name=${spec.name}`,
  ].join(' ');
  const settings: Record<string, string | number> = {
    listen_addresses: `'${spec.listen ?? '127.0.0.1'}'`,
    port,
    primary_conninfo: `'${conninfo}'`,
    primary_slot_name: `'${slot}'`,
    hot_standby: 'on',
    ...spec.settings,
  };
  await appendFile(join(dataDir, 'postgresql.conf'), `\n# standby of ${primary.name}\n${Object.entries(settings).map(([k, v]) => `${k} = ${v}`).join('\n')}\n`);
  await chownTree(dataDir, opts.account);
  await chmod(dataDir, 0o700);
  await chmod(join(dataDir, 'tls', 'server.key'), 0o600);
  const standby = new LocalPostgresCluster({ ...p, name: spec.name, host: spec.listen ?? '127.0.0.1', port, certificateHosts: spec.tls, dataDir });
  await standby.start();
  return standby;
}

/** Waits until `standby` has replayed everything `primary` had written when this was called. */
export async function waitForReplay(primary: LocalPostgresCluster, standby: LocalPostgresCluster, timeoutMs = 10_000): Promise<void> {
  const lsn = await primary.withSuperuser(async (admin) => (await admin.query<{ lsn: string }>('SELECT pg_current_wal_insert_lsn()::text AS lsn')).rows[0].lsn);
  const deadline = Date.now() + timeoutMs;
  await standby.withSuperuser(async (admin) => {
    for (;;) {
      const { rows } = await admin.query<{ done: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [lsn]);
      if (rows[0].done) return;
      if (Date.now() > deadline) throw new Error(`${standby.name} did not replay up to ${lsn} within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  });
}
