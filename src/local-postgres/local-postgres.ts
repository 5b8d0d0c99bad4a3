import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ClusterSpec, type LocalPostgresCluster, createCluster, initTemplate, randomPassword } from './local-postgres-cluster.js';
import { startOrphanReaper } from './orphan-reaper.js';
import { createStandby } from './streaming-standby.js';
import { type PostgresBinaries, findPostgresBinaries, resolveServerAccount } from './postgres-binaries.js';
import { type CertificateAuthority, createCertificateAuthority } from './tls-certificates.js';

export interface LocalPostgres {
  rootDir: string;
  binaries: PostgresBinaries;
  /** The CA that signed every TLS cluster's server certificate. */
  ca: CertificateAuthority;
  /** A CA that signed nothing here: for "wrong CA" checks. */
  unrelatedCa: CertificateAuthority;
  clusters: Record<string, LocalPostgresCluster>;
  /** Stops every cluster and deletes the directory. Idempotent. */
  stop(): Promise<void>;
}

/**
 * Starts throwaway PostgreSQL clusters on free loopback ports, all in one temporary directory,
 * with a fresh CA. Used by the test harness, the demo's embedded default and the benchmark.
 * A watchdog process removes everything if this process dies before calling stop().
 */
export async function startLocalPostgres(specs: ClusterSpec[]): Promise<LocalPostgres> {
  const account = resolveServerAccount();
  const rootDir = await mkdtemp(join(tmpdir(), 'secure-pg-'));
  await chmod(rootDir, 0o755); // the server account must reach its data directory (and binaries linked here)
  const binaries = await findPostgresBinaries(account, rootDir).catch(async (error: unknown) => {
    await rm(rootDir, { recursive: true, force: true });
    throw error;
  });
  const reaper = startOrphanReaper({
    pgCtl: binaries.pgCtl,
    dataDirs: specs.map((s) => join(rootDir, s.name)),
    rootDir,
    account,
  });
  const clusters: Record<string, LocalPostgresCluster> = {};
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await Promise.all(Object.values(clusters).map((c) => c.stop('fast').catch(() => c.stop('immediate')).catch(() => undefined)));
    await rm(rootDir, { recursive: true, force: true });
    reaper.dismiss();
  };
  try {
    const superuserPassword = randomPassword();
    const [ca, unrelatedCa, templateDir] = await Promise.all([
      createCertificateAuthority(rootDir, 'local-postgres-ca'),
      createCertificateAuthority(rootDir, 'unrelated-ca'),
      initTemplate(binaries.initdb, rootDir, superuserPassword, account),
    ]);
    const started = await Promise.all(
      specs
        .filter((spec) => !spec.standbyOf)
        .map((spec) => createCluster(spec, { rootDir, templateDir, pgCtl: binaries.pgCtl, ca, superuserPassword, account })),
    );
    for (const cluster of started) clusters[cluster.name] = cluster;
    for (const spec of specs.filter((s) => s.standbyOf)) {
      const primary = clusters[spec.standbyOf!];
      if (!primary) throw new Error(`${spec.name} is a standby of ${spec.standbyOf}, which is not among the clusters`);
      clusters[spec.name] = await createStandby(spec, primary, { rootDir, ca, account });
    }
    await rm(templateDir, { recursive: true, force: true });
    return { rootDir, binaries, ca, unrelatedCa, clusters, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
