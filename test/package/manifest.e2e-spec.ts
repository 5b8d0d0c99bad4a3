import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const REPO = join(import.meta.dirname, '..', '..');
const exec = promisify(execFile);
// Scripts npm runs when the package is installed (from the registry, a tarball or git): none may ship,
// so installing runs nothing of ours and npm 11 has nothing to ask approval for.
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepare'];

// The manifest as published: package/package.json inside the tarball `npm pack` writes. `npm pack
// --dry-run --json` lists the files but not the manifest's scripts, so the tarball is read instead.
// --ignore-scripts: prepack would empty and rebuild the dist/ other spec files are running.
describe('the published manifest', () => {
  let work: string;
  let manifest: { scripts?: Record<string, string> };
  let listed: string[];

  beforeAll(async () => {
    work = await mkdtemp(join(tmpdir(), 'secure-pg-manifest-'));
    const dry = await exec('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO });
    listed = (JSON.parse(dry.stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map((f) => f.path);
    const { stdout } = await exec('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], { cwd: REPO });
    const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
    const extracted = await exec('tar', ['-xzOf', join(work, packed!.filename), 'package/package.json']);
    manifest = JSON.parse(extracted.stdout) as typeof manifest;
  }, 60_000);

  afterAll(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('ships package.json, and no install-time script in it', () => {
    expect(listed).toContain('package.json');
    expect(manifest.scripts).toBeDefined();
    for (const name of INSTALL_SCRIPTS) expect({ [name]: manifest.scripts![name] }).toEqual({ [name]: undefined });
  });

  it('still builds dist when packed (prepack), so a tarball from a fresh clone is complete', () => {
    expect(manifest.scripts!.prepack).toMatch(/npm run build/);
  });
});
