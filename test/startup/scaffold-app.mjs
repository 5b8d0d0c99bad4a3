// `nest new`'s main.ts, as generated (NestFactory.create(AppModule), app.listen, bootstrap() without a
// catch), with the README's two changes: `logger: new SecureDatabaseLogger()` and
// `runBootstrap(bootstrap)` for `bootstrap()`. As generated when SCAFFOLD=plain. Built module from
// dist/; configuration from DATABASE_* variables.
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { NestFactory } from '@nestjs/core';
import { SecureDatabaseLogger, SecureDatabaseModule, databaseConfig, runBootstrap } from '../../dist/index.js';

class AppModule {}
Module({ imports: [ConfigModule.forRoot(), SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())] })(AppModule);

async function bootstrap() {
  const plain = process.env.SCAFFOLD === 'plain';
  const app = await NestFactory.create(AppModule, plain ? {} : { logger: new SecureDatabaseLogger() });
  await app.listen(process.env.PORT ?? 0);
}
if (process.env.SCAFFOLD === 'plain') bootstrap();
else runBootstrap(bootstrap);
