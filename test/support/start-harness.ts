import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startLocalPostgres, type LocalPostgres } from '../../src/local-postgres/index.js';
import { HARNESS_ENV, type HarnessFacts } from './harness-facts.js';

/** Starts the three shared clusters; their facts reach the test workers through a JSON file named in env. */
export async function startHarness(): Promise<LocalPostgres> {
  const started = Date.now();
  const local = await startLocalPostgres([
    { name: 'tls', tls: ['localhost', '127.0.0.1'] },
    { name: 'plain', tls: false },
    { name: 'tls-wrong-host', tls: ['db.wrong-host.test'] },
  ]);
  const facts: HarnessFacts = {
    caPath: local.ca.certPath,
    unrelatedCaPath: local.unrelatedCa.certPath,
    binaries: local.binaries,
    clusters: Object.fromEntries(Object.entries(local.clusters).map(([name, c]) => [name, c.facts])),
  };
  const file = join(local.rootDir, 'harness.json');
  await writeFile(file, JSON.stringify(facts), { mode: 0o600 });
  process.env[HARNESS_ENV] = file;
  process.stdout.write('\n');
  for (const c of Object.values(local.clusters)) {
    const tls = c.facts.caPath ? `TLS, certificate for ${c.facts.certificateHosts.join(', ')}` : 'no TLS';
    process.stdout.write(`[harness] cluster ${c.name.padEnd(14)} 127.0.0.1:${c.facts.port}  (${tls})\n`);
  }
  const b = local.binaries;
  // Once per run, so a log always says which major the suite ran on and why those binaries.
  process.stdout.write(`[harness] PostgreSQL ${b.version} (${b.source} binaries, ${b.binDir}${b.notes.length ? `; ${b.notes.join('; ')}` : ''}), ready in ${Date.now() - started} ms\n`);
  return local;
}
