import { describe, expect, it } from '@jest/globals';
import { runCli } from '../migrate/cli-process.js';

describe('the bin (built CLI): commands', () => {
  it('no command or an unknown one: exit 2 naming doctor, migrate and local-db; --help alone shows all three', async () => {
    for (const args of [[], ['check'], ['--json']]) {
      const run = await runCli(args, {});
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(/^nestjs-secure-postgres: (no command|unknown command check): the commands are doctor, migrate and local-db\n/);
    }
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/Usage: nestjs-secure-postgres doctor[\s\S]*nestjs-secure-postgres migrate [\s\S]*nestjs-secure-postgres local-db /);
  });

  it('a URL given as the command is refused without being echoed', async () => {
    const run = await runCli(['postgres://u:hunter2-secret@db.example/app'], {}, { secrets: ['hunter2-secret'] });
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/looks like a URL/);
  });
});
