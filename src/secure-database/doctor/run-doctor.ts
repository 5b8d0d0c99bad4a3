import { resolveDatabaseConfig } from '../config/resolve-database-config.js';
import type { SecureDatabaseModuleOptions } from '../interfaces/secure-database-options.interface.js';
import { type DoctorCheck, evaluateChecks } from './checks.js';
import { probeDatabase } from './probe.js';
import { type DoctorReport, buildReport, describeTarget } from './report.js';

/**
 * Resolves `options` as the module would (a ConfigurationError is thrown, as at startup), opens one
 * connection with the module's own pool, and grades what it finds. The report holds no secret: the
 * evidence is built from facts, and the password (URL, DATABASE_PASSWORD) and the key passphrase are
 * scrubbed from it once more in case a server or driver message ever echoed one.
 */
export async function runDoctor(options: SecureDatabaseModuleOptions, env: NodeJS.ProcessEnv = process.env, now = Date.now()): Promise<DoctorReport> {
  const config = resolveDatabaseConfig(options, env);
  const facts = await probeDatabase(config);
  const checks = evaluateChecks({ config, facts, env, now });
  const secrets = [(config.client as { password?: unknown }).password, options.password, options.sslKeyPassphrase].filter(
    (s): s is string => typeof s === 'string' && s.length >= 3,
  );
  const scrub = (text: string) => secrets.reduce((t, s) => t.split(s).join('***'), text);
  const clean = (c: DoctorCheck): DoctorCheck => ({ ...c, evidence: scrub(c.evidence), fix: scrub(c.fix) });
  return buildReport(describeTarget(config), checks.map(clean));
}
