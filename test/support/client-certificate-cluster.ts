import { randomBytes } from 'node:crypto';
import { appendFile, chown, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type LocalPostgresCluster, startLocalPostgres } from '../../src/local-postgres/index.js';
import { type ServerCertificate, issueClientCertificate } from '../../src/local-postgres/tls-certificates.js';

/** The role that logs in by client certificate alone (pg_hba.conf `cert`). */
export const CERT_ROLE = 'cert_login';

export interface ClientCertificateCluster {
  /** facts.user is the app role: scram-sha-256 with clientcert=verify-full (a password and a certificate naming it). */
  cluster: LocalPostgresCluster;
  caPem: string;
  caPath: string;
  /** Client certificates and keys (paths), each for the role its name says. */
  certificates: {
    /** CN=cert_login, signed by the cluster's CA. */
    certRole: ServerCertificate;
    /** The same role, another certificate (another key and serial), for rotation. */
    certRoleRenewed: ServerCertificate;
    /** CN=cert_login, key encrypted with `passphrase`. */
    certRoleEncrypted: ServerCertificate;
    /** CN=app (the app role), signed by the cluster's CA. */
    app: ServerCertificate;
    /** CN=someone_else: the right CA, the wrong name. */
    otherName: ServerCertificate;
    /** CN=cert_login, signed by a CA the server does not trust. */
    otherCa: ServerCertificate;
    /** CN=cert_login, valid for 10 days only. */
    shortLived: ServerCertificate;
  };
  passphrase: string;
  stop(): Promise<void>;
}

/**
 * A private TLS cluster that asks for client certificates: the server trusts the local CA for client
 * certificates (ssl_ca_file), `cert_login` authenticates by certificate alone (`hostssl … cert`), every
 * other role but the superuser by scram-sha-256 with `clientcert=verify-full` (the certificate's CN must
 * be the user name too). Certificates for the right and wrong names, and from another CA, are issued.
 */
export async function startClientCertificateCluster(): Promise<ClientCertificateCluster> {
  const local = await startLocalPostgres([{ name: 'mtls', tls: ['localhost', '127.0.0.1'] }]);
  try {
    const cluster = local.clusters.mtls;
    const { dataDir, account, superuser } = cluster.facts;
    const dir = join(local.rootDir, 'client-certificates');
    await mkdir(dir);
    const passphrase = randomBytes(12).toString('base64url');
    const [certRole, certRoleRenewed, certRoleEncrypted, app, otherName, otherCa, shortLived] = await Promise.all([
      issueClientCertificate(local.ca, dir, CERT_ROLE),
      issueClientCertificate(local.ca, dir, CERT_ROLE, { name: 'cert-login-renewed' }),
      issueClientCertificate(local.ca, dir, CERT_ROLE, { name: 'cert-login-encrypted', passphrase }),
      issueClientCertificate(local.ca, dir, cluster.facts.user),
      issueClientCertificate(local.ca, dir, 'someone_else'),
      issueClientCertificate(local.unrelatedCa, dir, CERT_ROLE, { name: 'cert-login-other-ca' }),
      issueClientCertificate(local.ca, dir, CERT_ROLE, { name: 'cert-login-short-lived', days: 10 }),
    ]);

    // The server's own copy of the CA it trusts for client certificates, readable by its account.
    const clientCa = join(dataDir, 'tls', 'client-ca.crt');
    await copyFile(local.ca.certPath, clientCa);
    if (account) await chown(clientCa, account.uid, account.gid);
    await appendFile(join(dataDir, 'postgresql.conf'), "\n# client certificates\nssl_ca_file = 'tls/client-ca.crt'\n");
    await cluster.withSuperuser((admin) => admin.query(`CREATE ROLE ${CERT_ROLE} LOGIN`));
    await writeFile(
      join(dataDir, 'pg_hba.conf'),
      '# written by client-certificate-cluster\n' +
        `hostssl all ${superuser} 127.0.0.1/32 scram-sha-256\n` +
        `hostssl all ${CERT_ROLE} 127.0.0.1/32 cert\n` +
        'hostssl all all 127.0.0.1/32 scram-sha-256 clientcert=verify-full\n' +
        'hostnossl all all 127.0.0.1/32 reject\n',
    );
    await cluster.restart();
    return {
      cluster,
      caPem: await readFile(local.ca.certPath, 'utf8'),
      caPath: local.ca.certPath,
      certificates: { certRole, certRoleRenewed, certRoleEncrypted, app, otherName, otherCa, shortLived },
      passphrase,
      stop: local.stop,
    };
  } catch (error) {
    await local.stop();
    throw error;
  }
}
