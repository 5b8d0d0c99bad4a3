import { spawn } from 'node:child_process';
import type { ServerAccount } from './postgres-binaries.js';

export interface ReapPlan {
  pgCtl: string;
  dataDirs: string[];
  rootDir: string;
  account?: ServerAccount;
}

// Runs as `node -e`, so it needs no file on disk and works from src/ (ts-jest) and dist/ alike.
const REAPER_SOURCE = `
const { spawnSync } = require('node:child_process');
const { rmSync } = require('node:fs');
const owner = Number(process.argv[1]);
const plan = JSON.parse(process.argv[2]);
setInterval(() => {
  try { process.kill(owner, 0); return; } catch {}
  for (const dir of plan.dataDirs) {
    spawnSync(plan.pgCtl, ['stop', '-D', dir, '-m', 'immediate', '-w', '-t', '10'], { ...plan.account, stdio: 'ignore' });
  }
  rmSync(plan.rootDir, { recursive: true, force: true });
  process.exit(0);
}, 250);
`;

/**
 * A detached watchdog that stops the clusters and deletes their directory if the process that
 * started them dies without cleaning up (Ctrl-C in jest, SIGKILL, a crash): servers started with
 * pg_ctl outlive their parent otherwise.
 */
export function startOrphanReaper(plan: ReapPlan): { dismiss(): void } {
  const child = spawn(process.execPath, ['-e', REAPER_SOURCE, String(process.pid), JSON.stringify(plan)], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return {
    dismiss() {
      if (child.pid !== undefined && child.exitCode === null) {
        try {
          process.kill(child.pid);
        } catch {
          // already gone
        }
      }
    },
  };
}
