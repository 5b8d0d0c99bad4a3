import { Controller, Get } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { DatabaseHealthIndicator } from '../../index.js';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: DatabaseHealthIndicator,
  ) {}

  /** Readiness: can this instance serve requests that need the database? */
  @Get()
  @HealthCheck()
  ready() {
    return this.health.check([() => this.database.pingCheck('database', { timeoutMs: 1000 })]);
  }

  /** Liveness: the process answers. Never touches the database (an outage must not restart every instance). */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }
}
