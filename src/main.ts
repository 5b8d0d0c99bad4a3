import 'reflect-metadata';
import type { Server } from 'node:http';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { SecureDatabaseError, SecureDatabaseLogger } from './index.js';
import { startEmbeddedDatabaseIfNeeded } from './demo/embedded-database.js';

const logger = new Logger('Demo');

async function bootstrap(): Promise<void> {
  const embedded = await startEmbeddedDatabaseIfNeeded(process.env, logger);
  // Imported after the environment is final: ConfigModule.forRoot() reads it when its module loads.
  const { AppModule } = await import('./demo/app.module.js');
  const production = !['development', 'test'].includes(process.env.APP_ENV?.trim().toLowerCase() ?? '');
  let app: NestExpressApplication;
  try {
    app = await NestFactory.create<NestExpressApplication>(AppModule, {
      abortOnError: false, // throw instead of process.abort(), so we exit 1 with one clear line
      logger: new SecureDatabaseLogger({ json: production }),
    });
  } catch (error) {
    await embedded?.stop();
    throw error;
  }
  const shutdownTimeoutMs = Number(process.env.DATABASE_SHUTDOWN_TIMEOUT_MS) || 10_000;
  let stopping = false;
  const stop = async (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    logger.log(`${signal}: draining in-flight requests, then closing the database pool`);
    const server: Server = app.getHttpServer();
    // A busy keep-alive connection would carry new requests for ever and hold the drain open until the
    // deadline cut them off mid-request: from now on each response closes its connection.
    server.prependListener('request', (_request, response) => response.setHeader('Connection', 'close'));
    // Requests still running at the deadline lose their sockets, so the process always ends in time.
    const deadline = setTimeout(() => server.closeAllConnections(), shutdownTimeoutMs).unref();
    await app.close(); // stops accepting, waits for in-flight requests, then drains the pool
    clearTimeout(deadline);
    await embedded?.stop();
    process.exit(0);
  };
  // Not enableShutdownHooks(): it re-raises the signal after closing, so the exit code would not be 0.
  process.once('SIGTERM', (s) => void stop(s));
  process.once('SIGINT', (s) => void stop(s));

  const port = Number(process.env.PORT) || 3000;
  await app.listen(port);
  logger.log(`Listening on http://localhost:${port} (health: /health, liveness: /health/live, API: /users)`);
}

bootstrap().catch((error: unknown) => {
  // Database startup failures were already logged by the module with their cause and fix.
  if (!(error instanceof SecureDatabaseError)) logger.error(`Startup failed: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
