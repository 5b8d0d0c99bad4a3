import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import type { CertificateAuthority } from '../../src/local-postgres/tls-certificates.js';

const run = promisify(execFile);

/** Waits until the server presents a certificate whose expiry satisfies `served` (a reload is a signal: it takes effect a moment later). */
async function untilServed(cluster: LocalPostgresCluster, served: (validTo: Date) => boolean): Promise<void> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const client = new pg.Client({ ...cluster.clientConfig('superuser'), ssl: { rejectUnauthorized: false } });
    await client.connect();
    const socket = (client as unknown as { connection: { stream: TLSSocket } }).connection.stream;
    const validTo = new Date(socket.getPeerCertificate().valid_to);
    await client.end();
    if (served(validTo)) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${cluster.name} did not start serving the new certificate`);
}

/**
 * Gives a running TLS cluster a server certificate (for localhost and 127.0.0.1, signed by `ca`) that
 * expired in 2020, and reloads the server (PostgreSQL reloads its TLS files on SIGHUP). `openssl x509
 * -days` refuses a validity in the past; `openssl ca` takes explicit start and end dates.
 */
export async function installExpiredCertificate(cluster: LocalPostgresCluster, ca: CertificateAuthority): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'expired-cert-'));
  try {
    await writeFile(join(dir, 'index.txt'), '');
    await writeFile(join(dir, 'serial'), '1000\n');
    await writeFile(
      join(dir, 'ca.cnf'),
      [
        '[ ca ]',
        'default_ca = local',
        '[ local ]',
        `database = ${join(dir, 'index.txt')}`,
        `new_certs_dir = ${dir}`,
        `serial = ${join(dir, 'serial')}`,
        'default_md = sha256',
        'policy = any',
        'unique_subject = no',
        '[ any ]',
        'commonName = supplied',
        '[ server ]',
        'subjectAltName = DNS:localhost,IP:127.0.0.1',
        'basicConstraints = critical,CA:FALSE',
        'extendedKeyUsage = serverAuth',
        '',
      ].join('\n'),
    );
    const key = join(dir, 'server.key');
    const csr = join(dir, 'server.csr');
    const cert = join(dir, 'server.crt');
    await run('openssl', ['req', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-keyout', key, '-out', csr]);
    await run('openssl', [
      'ca', '-batch', '-config', join(dir, 'ca.cnf'), '-extensions', 'server', '-notext',
      '-cert', ca.certPath, '-keyfile', ca.keyPath,
      '-startdate', '20200101000000Z', '-enddate', '20200201000000Z',
      '-in', csr, '-out', cert,
    ]);
    // Written over the existing files: they keep the server account as owner and the key its 0600.
    const tlsDir = join(cluster.facts.dataDir, 'tls');
    await writeFile(join(tlsDir, 'server.crt'), await readFile(cert));
    await writeFile(join(tlsDir, 'server.key'), await readFile(key));
    await cluster.withSuperuser((admin) => admin.query('SELECT pg_catalog.pg_reload_conf()'));
    await untilServed(cluster, (validTo) => validTo.getUTCFullYear() === 2020);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
