import { describe, expect, it } from '@jest/globals';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { harness, scratchDatabase } from '../support/harness.js';

const h = harness();

describe('@opentelemetry/api, an optional peer', () => {
  it('is never loaded by an app without a meter provider, even with query events and the slow-query log on (built module, own process)', async () => {
    const scratch = await scratchDatabase(h.tls);
    const dir = await mkdtemp(join(tmpdir(), 'meter-loading-'));
    const log = join(dir, 'imports.log');
    try {
      const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--import', join(import.meta.dirname, 'record-imports.mjs'), join(import.meta.dirname, 'unobserved-app.mjs')], {
          env: { ...process.env, DATABASE_URL: scratch.cluster.url(), DATABASE_SSL_ROOT_CERT: h.caPath, IMPORTS_LOG: log },
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (chunk) => (stdout += chunk));
        child.stderr.on('data', (chunk) => (stderr += chunk));
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      if (code !== 0) throw new Error(`unobserved-app.mjs exited with ${code}:\n${stderr}${stdout}`);
      expect(JSON.parse(stdout)).toEqual({ value: 42, events: 1 });
      const loaded = await readFile(log, 'utf8').catch(() => '');
      expect(loaded).toBe('');
    } finally {
      await rm(dir, { recursive: true, force: true });
      await scratch.drop();
    }
  });
});
