import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseService, MigrationError, SecureDatabaseModule } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { LogCapture } from '../support/log-capture.js';

const h = harness();

/** migrationsRun: the module applies pending migrations at startup, before the app serves. */
describe('migrationsRun: true', () => {
  let scratch: Awaited<ReturnType<typeof scratchDatabase>>;
  let dir: string;

  beforeAll(async () => {
    scratch = await scratchDatabase(h.tls);
    dir = await mkdtemp(join(tmpdir(), 'secure-pg-migrations-run-'));
    await writeFile(join(dir, '1_notes.sql'), 'CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);\nINSERT INTO notes VALUES (1, $$first$$);');
    await writeFile(join(dir, '2_tags.sql'), 'CREATE TABLE tags (note_id int REFERENCES notes, tag text NOT NULL);');
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
    await scratch?.drop();
  });

  const start = async (logs: LogCapture, migrationsDir = dir) => {
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', migrationsRun: true, migrationsDir })],
    }).compile();
    moduleRef.useLogger(logs);
    await moduleRef.init();
    return moduleRef;
  };

  it('applies the pending files at startup, once; a second start finds none pending', async () => {
    const logs = new LogCapture();
    const first = await start(logs);
    try {
      expect(await first.get(DatabaseService).fetchval('SELECT body FROM notes WHERE id = 1')).toBe('first');
      expect(await first.get(DatabaseService).fetchval('SELECT count(*)::int FROM tags')).toBe(0);
      expect(logs.text()).toContain('Migrations: applied 1_notes.sql, 2_tags.sql');
    } finally {
      await first.close();
    }
    const again = new LogCapture();
    const second = await start(again);
    await second.close();
    expect(again.text()).toContain('Migrations: none pending');
  });

  it('a failing migration fails the startup, naming the file and the SQLSTATE, not the SQL', async () => {
    const broken = await mkdtemp(join(tmpdir(), 'secure-pg-migrations-run-'));
    try {
      await writeFile(join(broken, '1_notes.sql'), 'CREATE TABLE notes (id int PRIMARY KEY, body text NOT NULL);\nINSERT INTO notes VALUES (1, $$first$$);');
      await writeFile(join(broken, '2_tags.sql'), 'CREATE TABLE tags (note_id int REFERENCES notes, tag text NOT NULL);');
      await writeFile(join(broken, '3_bad.sql'), 'ALTER TABLE no_such_table_secret_name ADD COLUMN x int;');
      const logs = new LogCapture();
      const error = await start(logs, broken).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(MigrationError);
      expect(error).toMatchObject({ file: '3_bad.sql', sqlstate: '42P01' });
      expect(logs.text()).toMatch(/Database startup failed \[migrations\]: .*3_bad\.sql/);
      expect(logs.text()).not.toContain('no_such_table_secret_name');
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });
});
