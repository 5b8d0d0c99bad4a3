import { readFile } from 'node:fs/promises';
import { type ClusterSpec, type LocalPostgresCluster, startLocalPostgres } from '../../src/local-postgres/index.js';

export interface PrivateCluster {
  cluster: LocalPostgresCluster;
  /** PEM of the CA that signed the server certificate (unused when TLS is off). */
  caPem: string;
  caPath: string;
  /** Stops the server and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A cluster of its own (≈2 s) for specs that restart, stop, fill or reconfigure the server, which the
 * shared harness clusters must never see. TLS-only with a certificate for localhost and 127.0.0.1 unless
 * `tls` says otherwise; `auth` (pg_hba.conf method) and `certificateDays` as in ClusterSpec. Share one
 * per spec file: start in beforeAll, stop() in afterAll.
 */
export async function startPrivateCluster(
  options: Pick<ClusterSpec, 'settings' | 'auth' | 'certificateDays'> & { tls?: string[] | false } = {},
): Promise<PrivateCluster> {
  const { tls = ['localhost', '127.0.0.1'], ...rest } = options;
  const local = await startLocalPostgres([{ name: 'private', tls, ...rest }]);
  try {
    return { cluster: local.clusters.private, caPem: await readFile(local.ca.certPath, 'utf8'), caPath: local.ca.certPath, stop: local.stop };
  } catch (error) {
    await local.stop();
    throw error;
  }
}
