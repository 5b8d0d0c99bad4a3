// The README's quick start as a user writes it: no custom logger, Nest's default error handling,
// `bootstrap()` without a catch, enableShutdownHooks(). Built module from dist/; configuration from
// DATABASE_* variables. One route that waits on the database: GET /sleep.
import 'reflect-metadata';
import { Controller, Get, Inject, Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER, NestFactory } from '@nestjs/core';
import { DatabaseExceptionFilter, DatabaseService, SecureDatabaseModule, databaseConfig } from '../../dist/index.js';

class SleepController {
  constructor(db) {
    this.db = db;
  }

  sleep() {
    return this.db.fetchval('SELECT pg_catalog.pg_sleep(30)::text');
  }
}
Inject(DatabaseService)(SleepController, undefined, 0);
Get('sleep')(SleepController.prototype, 'sleep', Object.getOwnPropertyDescriptor(SleepController.prototype, 'sleep'));
Controller()(SleepController);

class AppModule {}
Module({
  imports: [ConfigModule.forRoot(), SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())],
  controllers: [SleepController],
  providers: [{ provide: APP_FILTER, useClass: DatabaseExceptionFilter }],
})(AppModule);

async function bootstrap() {
  const app = await NestFactory.create(AppModule);
  app.enableShutdownHooks();
  await app.listen(process.env.PORT ?? 0);
  console.log(`Listening on ${app.getHttpServer().address().port}`);
}
bootstrap();
