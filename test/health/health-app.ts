import { Controller, Get, type INestApplication, type Provider, Query } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import { DatabaseHealthIndicator } from '../../src/secure-database/health/database.health.js';
import type { SecureDatabaseModuleOptions } from '../../src/secure-database/interfaces/secure-database-options.interface.js';
import { SecureDatabaseModule } from '../../src/secure-database/secure-database.module.js';
import { LogCapture } from '../support/log-capture.js';

/** The pattern the README recommends: liveness without the database, readiness with it. */
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: DatabaseHealthIndicator,
  ) {}

  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }

  @Get('ready')
  @HealthCheck()
  ready(@Query('connection') connection?: string) {
    return this.health.check([() => this.database.pingCheck('database', { connection, timeoutMs: 1000 })]);
  }
}

/** An app with TerminusModule, DatabaseHealthIndicator and one SecureDatabaseModule per connection options. */
export async function createHealthApp(connections: SecureDatabaseModuleOptions[], providers: Provider[] = []): Promise<{ app: INestApplication; logs: LogCapture }> {
  const logs = new LogCapture();
  const moduleRef = await Test.createTestingModule({
    imports: [TerminusModule, ...connections.map((options) => SecureDatabaseModule.forRoot(options))],
    controllers: [HealthController],
    providers: [DatabaseHealthIndicator, ...providers],
  })
    .setLogger(logs)
    .compile();
  const app = moduleRef.createNestApplication();
  app.useLogger(logs);
  await app.init();
  return { app, logs };
}
