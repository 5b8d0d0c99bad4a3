import { readFile } from 'node:fs/promises';
import { type LocalPostgresCluster, startLocalPostgres } from '../../src/local-postgres/index.js';
import type { CertificateAuthority } from '../../src/local-postgres/tls-certificates.js';

export interface ReplicationPair {
  /** Listens on 127.0.0.1, certificate for 127.0.0.1 and localhost. */
  primary: LocalPostgresCluster;
  /** Its hot standby, streaming over verified TLS; listens on 127.0.0.2, certificate for 127.0.0.2 only. */
  standby: LocalPostgresCluster;
  ca: CertificateAuthority;
  caPem: string;
  /** Stops both servers and deletes their directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * A primary and a streaming standby of their own (≈3 s), for specs that read from a replica, stop
 * it, pause its replay or promote it. The two certificates name different hosts, so a client that
 * verifies each against the host it dialled proves it did. Share one per spec file.
 */
export async function startReplicationPair(settings: Record<string, string | number> = {}): Promise<ReplicationPair> {
  const local = await startLocalPostgres([
    { name: 'primary', tls: ['127.0.0.1', 'localhost'], settings },
    { name: 'standby', tls: ['127.0.0.2'], listen: '127.0.0.2', standbyOf: 'primary' },
  ]);
  try {
    return { primary: local.clusters.primary, standby: local.clusters.standby, ca: local.ca, caPem: await readFile(local.ca.certPath, 'utf8'), stop: local.stop };
  } catch (error) {
    await local.stop();
    throw error;
  }
}
