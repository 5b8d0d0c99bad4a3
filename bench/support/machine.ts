import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg, platform, release, totalmem } from 'node:os';
import { join } from 'node:path';

function packageVersion(name: string): string {
  // Read the file itself: typeorm's exports map hides package.json from require.
  try {
    const entry = createRequire(import.meta.url).resolve.paths(name)?.map((dir) => join(dir, name, 'package.json'));
    for (const path of entry ?? []) {
      try {
        return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
      } catch {
        // next candidate directory
      }
    }
  } catch {
    // fall through
  }
  return 'unknown';
}

/** One line per fact, for the top of the output and the README. */
export function describeMachine(server: { serverVersion: string; tls: string }, startedAt: Date): string[] {
  const cores = cpus();
  return [
    `Date: ${startedAt.toISOString()}`,
    `CPU: ${cores[0]?.model ?? 'unknown'} × ${cores.length} logical cores; RAM ${(totalmem() / 1024 ** 3).toFixed(1)} GiB; load average at start ${loadavg().map((l) => l.toFixed(2)).join(' ')}`,
    `OS: ${platform()} ${release()}; Node ${process.version}`,
    `PostgreSQL ${server.serverVersion}: private local cluster on the same machine, loopback TCP, ${server.tls}, verify-full; fsync and synchronous_commit off`,
    `Packages: pg ${packageVersion('pg')}, @nestjs/core ${packageVersion('@nestjs/core')}, typeorm ${packageVersion('typeorm')}, @nestjs/typeorm ${packageVersion('@nestjs/typeorm')}, postgres ${packageVersion('postgres')}`,
  ];
}
