// A second application instance for the statement-name spec: the built module (dist/) in a process of
// its own, behind the same pooler, driven line by line on stdin: "run <id>" runs its one statement
// once and prints the value (or "failed <code>"); the end of stdin closes it.
import 'reflect-metadata';
import { createInterface } from 'node:readline';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DatabaseService, SecureDatabaseModule } from '../../dist/index.js';

const { DATABASE_URL, CA_PEM, TEXT } = process.env;

class AppModule {}
Module({
  imports: [SecureDatabaseModule.forRoot({ url: DATABASE_URL, sslRootCert: CA_PEM, pooler: 'none', appEnv: 'production', poolMax: 1 })],
})(AppModule);

const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
const db = app.get(DatabaseService);
process.stdout.write('ready\n');
for await (const line of createInterface({ input: process.stdin })) {
  const [command, id] = line.split(' ');
  if (command !== 'run') continue;
  try {
    process.stdout.write(`${await db.fetchval(TEXT, [Number(id)])}\n`);
  } catch (error) {
    process.stdout.write(`failed ${error.code}\n`);
  }
}
await app.close();
