// A process for the exit-after-close spec: the built module (dist/), every kind of call once, some of them
// left early (a stream or COPY broken off, a COPY whose rows throw, an aborted query), then app.close(),
// and nothing else: no process.exit. It prints "closed" and must then end by itself.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, SecureDatabaseModule, sql } from '../../dist/index.js';

const { DATABASE_URL, CA_PEM } = process.env;

class AppModule {}
Module({ imports: [SecureDatabaseModule.forRoot({ url: DATABASE_URL, sslRootCert: CA_PEM, appEnv: 'production', poolMax: 4 })] })(AppModule);

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const db = app.get(DatabaseService);
const steps = {
  query: () => db.fetch(sql`SELECT g FROM generate_series(1, ${3}::int) g`),
  reads: () => Promise.all(Array.from({ length: 32 }, (_, i) => db.fetchval(sql`SELECT ${i}::int`))),
  transaction: () => db.transaction((tx) => tx.execute(sql`INSERT INTO items VALUES (${-1}, ${'tx'})`).then(() => tx.transaction((inner) => inner.fetch('SELECT 1')))),
  stream: async () => {
    for await (const row of db.stream('SELECT g FROM generate_series(1, 2000) g', [], { batchSize: 100 })) void row;
  },
  'stream broken off': async () => {
    for await (const row of db.stream('SELECT g FROM generate_series(1, 2000) g', [], { batchSize: 100 })) break;
  },
  copyFrom: () => db.copyFrom('items', ['id', 'label'], Array.from({ length: 1000 }, (_, i) => [i, `item-${i}`])),
  'copyFrom whose rows throw': () =>
    db.copyFrom('items', ['id', 'label'], (function* () {
      yield [5000, 'a'];
      throw new Error('the rows failed');
    })()).catch(() => undefined),
  copyTo: async () => {
    for await (const row of db.copyTo('SELECT id, label FROM items')) void row;
  },
  'copyTo broken off': async () => {
    for await (const chunk of db.copyTo('SELECT g FROM generate_series(1, 100000) g', { chunks: true })) break;
  },
  'aborted query': () => db.fetch('SELECT pg_sleep(5)', [], { signal: AbortSignal.timeout(100) }).catch(() => undefined),
  'per-call timeout': () => db.fetch('SELECT pg_sleep(5)', [], { timeoutMs: 100 }).catch(() => undefined),
  'listen and notify': async () => {
    let heard;
    const got = new Promise((resolve) => (heard = resolve));
    const subscription = await db.listen('exit_after_close', heard);
    await db.notify('exit_after_close', 'hello');
    await got;
    await subscription.unsubscribe();
  },
  withConnection: () => db.withConnection((connection) => connection.fetch('SELECT 1')),
};
for (const [name, step] of Object.entries(steps)) {
  try {
    await step();
  } catch (error) {
    process.stdout.write(`step "${name}" failed: ${error.code ?? error.name}\n`);
    process.exitCode = 1;
  }
}
await app.close();
process.stdout.write('closed\n');
