import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import type { DoctorCheck } from './checks.js';

export type Verdict = 'pass' | 'warn' | 'fail';

export interface DoctorReport {
  /** `fail` when any check failed (exit 1); `warn` when some warned; else `pass`. */
  verdict: Verdict;
  /** The one-line verdict. */
  summary: string;
  /** The database checked (describeTarget: no secret). */
  target: string;
  checks: DoctorCheck[];
}

export function buildReport(target: string, checks: DoctorCheck[]): DoctorReport {
  const ids = (status: DoctorCheck['status']) => checks.filter((c) => c.status === status).map((c) => c.id);
  const [failed, warned, skipped] = [ids('fail'), ids('warn'), ids('skip')];
  const verdict: Verdict = failed.length ? 'fail' : warned.length ? 'warn' : 'pass';
  const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;
  const parts = [
    failed.length && `${plural(failed.length, 'check')} failed (${failed.join(', ')})`,
    warned.length && `${plural(warned.length, 'warning')} (${warned.join(', ')})`,
    skipped.length && `${skipped.length} not checked`,
  ].filter(Boolean);
  const summary =
    verdict === 'fail'
      ? `FAIL: ${parts.join('; ')}`
      : verdict === 'warn'
        ? `PASS with ${parts.join('; ')}`
        : `PASS: all ${checks.length} checks passed`;
  return { verdict, summary, target, checks };
}

/**
 * The database checked, as a URL rebuilt from the resolved configuration (never the text given, which
 * may hold the password or other secrets in any parameter): the password as ***, the effective sslmode.
 */
export function describeTarget(config: ResolvedDatabaseConfig): string {
  const { target, tls, channelBinding, topology } = config;
  const hosts = target.hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
  const password = (config.client as { password?: unknown }).password ? ':***' : '';
  const params = [
    `sslmode=${tls.mode}`,
    channelBinding !== 'disable' && `channel_binding=${channelBinding}`,
    topology.targetSessionAttrs !== 'any' && `target_session_attrs=${topology.targetSessionAttrs}`,
  ].filter(Boolean);
  return `postgresql://${encodeURIComponent(target.user)}${password}@${hosts}/${encodeURIComponent(target.database)}?${params.join('&')}`;
}

const STATUS_WIDTH = 6;

/** The table: status, check, evidence, and the fix under any row that is not a pass; then the verdict. */
export function renderText(report: DoctorReport): string {
  const idWidth = Math.max(5, ...report.checks.map((c) => c.id.length)) + 2;
  const pad = (s: string, n: number) => s.padEnd(n);
  const indent = ' '.repeat(STATUS_WIDTH + 2 + idWidth);
  const lines = [`nestjs-secure-postgres doctor: ${report.target}`, '', `${pad('STATUS', STATUS_WIDTH + 2)}${pad('CHECK', idWidth)}EVIDENCE`];
  for (const check of report.checks) {
    lines.push(`${pad(check.status, STATUS_WIDTH + 2)}${pad(check.id, idWidth)}${check.evidence}`);
    if (check.fix && check.status !== 'pass' && check.status !== 'skip') lines.push(`${indent}fix: ${check.fix}`);
  }
  lines.push('', `Verdict: ${report.summary}`);
  return `${lines.join('\n')}\n`;
}

export function renderJson(report: DoctorReport): string {
  return `${JSON.stringify({ verdict: report.verdict, summary: report.summary, target: report.target, checks: report.checks }, null, 2)}\n`;
}
