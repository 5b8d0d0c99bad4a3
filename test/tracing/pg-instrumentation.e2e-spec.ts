import { beforeAll, describe, expect, it } from '@jest/globals';
import { SpanStatusCode } from '@opentelemetry/api';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { harness, scratchDatabase } from '../support/harness.js';

const TRACED_APP = join(import.meta.dirname, 'traced-app.mjs');
const BUILT_MODULE = join(import.meta.dirname, '..', '..', 'dist', 'index.js');

// Every bound value the traced app sends contains it.
const SECRET = `secret${randomBytes(6).toString('hex')}`;

const QUERY = 'SELECT id FROM accounts WHERE email = $1';
const TEMPLATE = 'SELECT count(*)::int FROM accounts WHERE email <> $1';
const INSERT = 'INSERT INTO accounts (id, email) VALUES ($1, $2)';
const BY_UUID = 'SELECT email FROM accounts WHERE id = $1';

interface RecordedSpan {
  name: string;
  attributes: Record<string, unknown>;
  events: { name: string; attributes?: Record<string, unknown> }[];
  status: { code: SpanStatusCode; message?: string };
}

interface TracedRun {
  outcome: { query: number; template: number; transaction: number; invalidUuid: string; duplicate: string };
  spans: RecordedSpan[];
}

/** Runs traced-app.mjs against a fresh database and returns what it printed. */
async function runTracedApp(env: Record<string, string> = {}): Promise<TracedRun> {
  if (!existsSync(BUILT_MODULE)) throw new Error('dist/index.js is missing: run `npm run build` first (npm test does)');
  const h = harness();
  const scratch = await scratchDatabase(h.tls);
  try {
    const child = spawn(process.execPath, [TRACED_APP], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', DATABASE_URL: scratch.cluster.url(), DATABASE_SSL_ROOT_CERT: h.caPath, SECRET, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
    if (code !== 0) throw new Error(`traced-app.mjs exited with ${code}:\n${stderr}${stdout}`);
    return JSON.parse(stdout) as TracedRun;
  } finally {
    await scratch.drop();
  }
}

const leaks = (value: unknown) => JSON.stringify(value ?? null).includes(SECRET);
const statementOf = (span: RecordedSpan) => span.attributes['db.query.text'] ?? span.attributes['db.statement'];
const spansOf = (run: TracedRun, statement: string) => run.spans.filter((span) => statementOf(span) === statement);

describe('@opentelemetry/instrumentation-pg over the module', () => {
  describe('with its default settings', () => {
    let run: TracedRun;

    beforeAll(async () => {
      run = await runTracedApp();
    });

    it('ran every scenario, the failing ones failing for their reason', () => {
      expect(run.outcome).toEqual({ query: 0, template: 0, transaction: 1, invalidUuid: '22P02', duplicate: '23505' });
    });

    it('records connect spans and one span per statement, whose text has placeholders', () => {
      const names = run.spans.map((span) => span.name);
      expect(names).toContain('pg.connect');
      expect(names).toContain('pg-pool.connect');
      const statements = run.spans.map(statementOf).filter((text) => text !== undefined);
      // BEGIN travels in the first statement's write (the transaction's INSERT span covers it): no span of its own.
      expect(statements).toEqual(expect.arrayContaining([QUERY, TEMPLATE, INSERT, 'COMMIT', BY_UUID]));
      expect(statements).not.toContain('BEGIN');
      // The transaction's insert and the duplicate one.
      expect(spansOf(run, INSERT)).toHaveLength(2);
    });

    it('puts no bound value in any span attribute or event', () => {
      expect(run.spans.filter((span) => leaks(span.attributes) || leaks(span.events))).toEqual([]);
      expect(run.spans.filter((span) => 'db.postgresql.values' in span.attributes)).toEqual([]);
    });

    it('records a failed query as ERROR with a SQLSTATE-only exception event', () => {
      for (const [statement, sqlstate] of [
        [BY_UUID, '22P02'],
        [INSERT, '23505'],
      ]) {
        const failed = spansOf(run, statement).filter((span) => span.status.code === SpanStatusCode.ERROR);
        expect(failed).toHaveLength(1);
        expect(failed[0].events).toEqual([
          { name: 'exception', attributes: { 'exception.message': `PostgreSQL error of type 'error' occurred (code: ${sqlstate})` } },
        ]);
      }
    });

    // The one leak, documented in the README: the status message is pg's error message verbatim,
    // and for class 22 errors the server quotes the rejected value in it.
    it("copies pg's error message into the status message, a rejected value included", () => {
      const statusMessages = run.spans.filter((span) => span.status.message !== undefined).map((span) => [statementOf(span), span.status.message]);
      expect(statusMessages).toEqual([
        [BY_UUID, `invalid input syntax for type uuid: "not-a-uuid-${SECRET}"`],
        [INSERT, 'duplicate key value violates unique constraint "accounts_email_key"'],
      ]);
    });
  });

  describe("with the README's requestHook", () => {
    let run: TracedRun;

    beforeAll(async () => {
      run = await runTracedApp({ DROP_STATUS_MESSAGE: '1' });
    });

    it('still records the spans and the failures', () => {
      expect(run.outcome).toMatchObject({ invalidUuid: '22P02', duplicate: '23505' });
      expect(spansOf(run, QUERY)).toHaveLength(1);
      const failed = run.spans.filter((span) => span.status.code === SpanStatusCode.ERROR);
      expect(failed.map(statementOf)).toEqual([BY_UUID, INSERT]);
      for (const span of failed) expect(span.events.map((event) => event.name)).toEqual(['exception']);
    });

    it('puts no bound value anywhere in any span', () => {
      expect(run.spans.filter(leaks)).toEqual([]);
      expect(run.spans.filter((span) => span.status.message !== undefined)).toEqual([]);
    });
  });
});
