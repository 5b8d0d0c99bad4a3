import { Module } from '@nestjs/common';
import { ConfigModule } from '@nestjs/config';
import { APP_FILTER } from '@nestjs/core';
import { DatabaseExceptionFilter, SecureDatabaseModule, databaseConfig, replicaDatabaseConfig } from '../index.js';
import { HealthModule } from './health/health.module.js';
import { prometheusMetricsEnabled } from './metrics/metrics-switch.js';
import { REPLICA, replicaConfigured } from './replica.js';
import { UsersModule } from './users/users.module.js';

// DEMO_METRICS=prometheus: loaded (and the global meter provider registered) before the database module starts.
const metricsModule = prometheusMetricsEnabled() ? (await import('./metrics/metrics.module.js')).MetricsModule : undefined;

/** The demo: the module used exactly as an application should use it. */
@Module({
  imports: [
    ConfigModule.forRoot({ ignoreEnvFile: true }),
    SecureDatabaseModule.forRootAsync(databaseConfig.asProvider()),
    // DATABASE_REPLICA_URL: a readOnly second connection the list and export routes read from.
    ...(replicaConfigured() ? [SecureDatabaseModule.forRootAsync({ name: REPLICA, ...replicaDatabaseConfig.asProvider() })] : []),
    HealthModule,
    UsersModule,
    ...(metricsModule ? [metricsModule] : []),
  ],
  providers: [{ provide: APP_FILTER, useClass: DatabaseExceptionFilter }],
})
export class AppModule {}
