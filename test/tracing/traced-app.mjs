// Run by pg-instrumentation.e2e-spec.ts as a child process: an app that registers
// @opentelemetry/instrumentation-pg before it loads the built module, sends queries whose values all
// contain SECRET, and prints what it saw and the finished spans as JSON on stdout. A process of its
// own because jest's ESM vm does not run the require hook the instrumentation patches pg with.
// Env: DATABASE_URL (verify-full), DATABASE_SSL_ROOT_CERT (CA path), SECRET, and DROP_STATUS_MESSAGE
// to use the requestHook the README recommends instead of the instrumentation's defaults.
import { trace } from '@opentelemetry/api';
import { registerInstrumentations } from '@opentelemetry/instrumentation';
import { PgInstrumentation } from '@opentelemetry/instrumentation-pg';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';

const { DATABASE_URL: url, DATABASE_SSL_ROOT_CERT: sslRootCert, SECRET: secret, DROP_STATUS_MESSAGE } = process.env;

const exporter = new InMemorySpanExporter();
const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
trace.setGlobalTracerProvider(provider);

// The README's snippet: a failed query keeps its ERROR status but not pg's message, which can quote
// the rejected value (22P02: invalid input syntax for type uuid: "…").
const dropStatusMessage = {
  requestHook(span) {
    const setStatus = span.setStatus.bind(span);
    span.setStatus = ({ code }) => setStatus({ code });
  },
};
registerInstrumentations({ instrumentations: [new PgInstrumentation(DROP_STATUS_MESSAGE ? dropStatusMessage : {})] });

// Only now load pg (through the module): the require hook patches pg's client and pg-pool as pg's
// index requires them, even though the module itself imports pg as ESM.
await import('reflect-metadata');
const { NestFactory } = await import('@nestjs/core');
const { DatabaseService, SecureDatabaseModule, sql } = await import('../../dist/index.js');

const app = await NestFactory.createApplicationContext(
  { imports: [SecureDatabaseModule.forRoot({ url, sslRootCert, appEnv: 'production' })] },
  // stdout carries the result only.
  { logger: false, abortOnError: false },
);
const db = app.get(DatabaseService);

/** The SQLSTATE a query was refused with, so the spec knows each failure happened for its reason. */
const sqlstateOf = (promise) =>
  promise.then(
    () => 'no error',
    (error) => error.sqlstate ?? String(error),
  );

await db.execute('CREATE TABLE accounts (id uuid PRIMARY KEY, email text UNIQUE NOT NULL)');
const outcome = {
  query: (await db.query('SELECT id FROM accounts WHERE email = $1', [`${secret}-query`])).rowCount,
  // fetchval sends a query config object (array rows), pg's other call shape.
  template: await db.fetchval(sql`SELECT count(*)::int FROM accounts WHERE email <> ${`${secret}-template`}`),
  transaction: await db.transaction((tx) =>
    tx.execute('INSERT INTO accounts (id, email) VALUES ($1, $2)', ['00000000-0000-4000-8000-000000000001', `${secret}-transaction`]),
  ),
  invalidUuid: await sqlstateOf(db.fetch('SELECT email FROM accounts WHERE id = $1', [`not-a-uuid-${secret}`])),
  duplicate: await sqlstateOf(
    db.execute(sql`INSERT INTO accounts (id, email) VALUES (${'00000000-0000-4000-8000-000000000002'}, ${`${secret}-transaction`})`),
  ),
};
await app.close();
await provider.forceFlush();

const spans = exporter.getFinishedSpans().map(({ name, attributes, events, status }) => ({
  name,
  attributes,
  events: events.map((event) => ({ name: event.name, attributes: event.attributes })),
  status,
}));
process.stdout.write(JSON.stringify({ outcome, spans }));
