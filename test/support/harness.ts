import { readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { HARNESS_ENV, type HarnessFacts } from './harness-facts.js';

export interface Harness {
  /** PEM path of the CA that signed the tls and tls-wrong-host server certificates. */
  caPath: string;
  caPem: string;
  /** PEM path of a CA that signed nothing here. */
  unrelatedCaPath: string;
  /** TLS only (hostnossl rejected), certificate for localhost and 127.0.0.1. */
  tls: LocalPostgresCluster;
  /** TLS off, password auth. */
  plain: LocalPostgresCluster;
  /** TLS with a certificate for db.wrong-host.test, same CA. */
  wrongHost: LocalPostgresCluster;
  /** The binaries every cluster of this run uses (SECURE_PG_MAJOR picks the major). */
  binaries: HarnessFacts['binaries'];
}

let cached: Harness | undefined;

/** The shared clusters started by globalSetup. */
export function harness(): Harness {
  if (cached) return cached;
  const file = process.env[HARNESS_ENV];
  if (!file) throw new Error(`${HARNESS_ENV} is not set: run the tests through jest (npm test) so globalSetup starts the clusters`);
  const facts = JSON.parse(readFileSync(file, 'utf8')) as HarnessFacts;
  cached = {
    caPath: facts.caPath,
    caPem: readFileSync(facts.caPath, 'utf8'),
    unrelatedCaPath: facts.unrelatedCaPath,
    tls: new LocalPostgresCluster(facts.clusters.tls),
    plain: new LocalPostgresCluster(facts.clusters.plain),
    wrongHost: new LocalPostgresCluster(facts.clusters['tls-wrong-host']),
    binaries: facts.binaries,
  };
  return cached;
}

/**
 * A fresh database owned by the app role on `cluster`, so spec files running in parallel never see
 * each other's tables. Returns a cluster handle whose url() points at it, and a drop function.
 */
export async function scratchDatabase(cluster: LocalPostgresCluster): Promise<{ cluster: LocalPostgresCluster; drop(): Promise<void> }> {
  const name = `scratch_${randomBytes(6).toString('hex')}`;
  await cluster.withSuperuser((admin) => admin.query(`CREATE DATABASE ${name} OWNER ${admin.escapeIdentifier(cluster.facts.user)}`));
  return {
    cluster: new LocalPostgresCluster({ ...cluster.facts, database: name }),
    drop: () => cluster.withSuperuser((admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)).then(() => undefined),
  };
}
