// Child process of the bounded-results scenario: the demo app (configured by the DATABASE_* variables
// its parent passes), listening on PORT; prints "ready" once it serves.
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';

async function main(): Promise<void> {
  // Imported after the environment is final: ConfigModule.forRoot() reads it when its module loads.
  const { AppModule } = await import('../../src/demo/app.module.js');
  const app = await NestFactory.create(AppModule, { logger: ['error'] });
  app.enableShutdownHooks();
  await app.listen(Number(process.env.PORT));
  process.stdout.write('ready\n');
}

main().catch((error: unknown) => {
  process.stderr.write(`${(error as Error)?.stack ?? String(error)}\n`);
  process.exitCode = 1;
});
