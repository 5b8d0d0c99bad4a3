import { Controller, Get, Optional } from '@nestjs/common';
import { HealthCheck, HealthCheckService } from '@nestjs/terminus';
import { DatabaseHealthIndicator, type DatabaseService, InjectDatabase } from '../../index.js';
import { REPLICA } from '../replica.js';

@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly database: DatabaseHealthIndicator,
    @Optional() @InjectDatabase(REPLICA) private readonly replica?: DatabaseService,
  ) {}

  /**
   * Readiness: can this instance serve requests that need the database? Each connection under its
   * own name: with a replica, the list routes need it, so its outage shows (the primary's check
   * stays up and its routes keep working).
   */
  @Get()
  @HealthCheck()
  ready() {
    return this.health.check([
      () => this.database.pingCheck('database', { timeoutMs: 1000 }),
      ...(this.replica ? [() => this.database.pingCheck(REPLICA, { connection: REPLICA, timeoutMs: 1000 })] : []),
    ]);
  }

  /** Liveness: the process answers. Never touches the database (an outage must not restart every instance). */
  @Get('live')
  @HealthCheck()
  live() {
    return this.health.check([]);
  }
}
