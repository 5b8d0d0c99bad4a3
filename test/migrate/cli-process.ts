import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'secure-database', 'doctor', 'cli.js');

export interface CliRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built CLI (`node dist/secure-database/doctor/cli.js …`) with exactly `env` (plus PATH and
 * HOME) in `cwd`, as a user would. Every run checks that no `secrets` (passwords) reach its output.
 */
export async function runCli(args: string[], env: Record<string, string>, options: { cwd?: string; secrets?: string[]; onSpawn?: () => void } = {}): Promise<CliRun> {
  if (!existsSync(CLI)) throw new Error('dist/secure-database/doctor/cli.js is missing: run `npm run build` first (npm test does)');
  const child = spawn(process.execPath, [CLI, ...args], {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const killer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  clearTimeout(killer);
  for (const secret of options.secrets ?? []) {
    if (secret && (stdout.includes(secret) || stderr.includes(secret))) throw new Error(`the CLI printed a secret (exit ${code}):\n${stdout}\n${stderr}`);
  }
  return { code, stdout, stderr };
}
