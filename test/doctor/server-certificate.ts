import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import pg from 'pg';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import type { CertificateAuthority } from '../../src/local-postgres/tls-certificates.js';

const run = promisify(execFile);

/** Waits until the server presents the certificate `pem` (a reload is a signal: it takes effect a moment later). */
async function untilServed(cluster: LocalPostgresCluster, pem: string): Promise<void> {
  const expected = new X509Certificate(pem).fingerprint256;
  for (let attempt = 0; attempt < 50; attempt++) {
    const client = new pg.Client({ ...cluster.clientConfig('superuser'), ssl: { rejectUnauthorized: false } });
    await client.connect();
    const socket = (client as unknown as { connection: { stream: TLSSocket } }).connection.stream;
    const fingerprint = socket.getPeerCertificate().fingerprint256;
    await client.end();
    if (fingerprint === expected) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${cluster.name} did not start serving the new certificate`);
}

export interface CertificateShape {
  /** openssl's YYYYMMDDHHMMSSZ; with `endDate`, instead of 30 days from now. */
  startDate?: string;
  endDate?: string;
  /** The signature's digest (sha256 unless told). */
  digest?: 'sha1' | 'sha256';
}

/**
 * Gives a running TLS cluster a new server certificate (for localhost and 127.0.0.1, signed by `ca`)
 * of the given shape, and reloads the server (PostgreSQL reloads its TLS files on SIGHUP). `openssl
 * ca`, unlike `openssl x509 -days`, takes a validity in the past and any digest.
 */
export async function installServerCertificate(cluster: LocalPostgresCluster, ca: CertificateAuthority, shape: CertificateShape): Promise<void> {
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
      '-md', shape.digest ?? 'sha256',
      ...(shape.endDate ? ['-startdate', shape.startDate ?? '20200101000000Z', '-enddate', shape.endDate] : ['-days', '30']),
      '-in', csr, '-out', cert,
    ]);
    // Written over the existing files: they keep the server account as owner and the key its 0600.
    const tlsDir = join(cluster.facts.dataDir, 'tls');
    await writeFile(join(tlsDir, 'server.crt'), await readFile(cert));
    await writeFile(join(tlsDir, 'server.key'), await readFile(key));
    await cluster.withSuperuser((admin) => admin.query('SELECT pg_catalog.pg_reload_conf()'));
    const served = await readFile(cert, 'utf8');
    await untilServed(cluster, served);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
