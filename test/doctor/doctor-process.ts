import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'secure-database', 'doctor', 'cli.js');

export interface DoctorCheckJson {
  id: string;
  status: 'pass' | 'warn' | 'fail' | 'skip';
  evidence: string;
  fix: string;
}

export interface DoctorJson {
  verdict: 'pass' | 'warn' | 'fail' | 'error';
  summary: string;
  target?: string;
  problems?: string[];
  checks: DoctorCheckJson[];
}

export interface DoctorRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Parsed stdout, when run with --json. */
  json?: DoctorJson;
  /** The check with this id (from --json output); throws when absent. */
  check(id: string): DoctorCheckJson;
}

function passwordOf(url: string | undefined): string | undefined {
  if (!url) return undefined;
  try {
    const password = decodeURIComponent(new URL(url).password);
    return password || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs the built CLI (`node dist/secure-database/doctor/cli.js doctor …`) with exactly `env` (plus
 * PATH and HOME), as a user would. Every run also checks the one promise that holds whatever the
 * verdict: neither stdout nor stderr contains the password of the URL it was given, nor any of `secrets`.
 */
export async function runDoctorCli(
  env: Record<string, string>,
  options: { args?: string[]; stdin?: string; secrets?: string[] } = {},
): Promise<DoctorRun> {
  if (!existsSync(CLI)) throw new Error('dist/secure-database/doctor/cli.js is missing: run `npm run build` first (npm test does)');
  const args = options.args ?? ['doctor', '--json'];
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin.end(options.stdin ?? '');
  const killer = setTimeout(() => child.kill('SIGKILL'), 25_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearTimeout(killer);

  const secrets = [passwordOf(env.DATABASE_URL), passwordOf(options.stdin?.trim()), ...(options.secrets ?? [])].filter((s): s is string => Boolean(s));
  for (const secret of secrets) {
    if (stdout.includes(secret) || stderr.includes(secret)) throw new Error(`the doctor printed a secret (exit ${code}):\n${stdout}\n${stderr}`);
  }
  let json: DoctorJson | undefined;
  if (args.includes('--json') && stdout.trim()) {
    try {
      json = JSON.parse(stdout) as DoctorJson;
    } catch {
      throw new Error(`--json output is not JSON (exit ${code}):\n${stdout}\n${stderr}`);
    }
  }
  return {
    code,
    stdout,
    stderr,
    json,
    check(id) {
      const found = json?.checks.find((c) => c.id === id);
      if (!found) throw new Error(`no check ${id} in the output (exit ${code}):\n${stdout}\n${stderr}`);
      return found;
    },
  };
}

/** id → status of every check: one object to compare, so a failure shows the whole verdict. */
export function statuses(run: DoctorRun): Record<string, string> {
  return Object.fromEntries((run.json?.checks ?? []).map((c) => [c.id, c.status]));
}
