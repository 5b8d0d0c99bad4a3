import type { INestApplication } from '@nestjs/common';
import { APP_FILTER, HttpAdapterHost, ModuleRef } from '@nestjs/core';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { DATABASE_EXCEPTION_FILTER_OPTIONS, DatabaseExceptionFilter, type DatabaseExceptionFilterOptions } from '../../src/secure-database/filter/database-exception.filter.js';
import { SecureDatabaseModule } from '../../src/secure-database/secure-database.module.js';
import { getPoolToken } from '../../src/secure-database/secure-database.utils.js';
import { LogCapture } from '../support/log-capture.js';
import { FAILING_ROUTE_DEPS, type FailingRouteDeps, FailingRoutesController, SCHEMA_SQL } from './failing-routes.js';

export interface FailingRoutesAppOptions {
  url: string;
  caPem: string;
  appEnv?: string;
  deps: Omit<FailingRouteDeps, 'raw'>;
  platform?: 'express' | 'fastify';
  /**
   * `provider`: APP_FILTER with useClass (reads appEnv from the module); `global`: useGlobalFilters(new
   * DatabaseExceptionFilter(adapterHost)) (reads APP_ENV); `global-module-ref`: the same given ModuleRef too (reads the module);
   * `factory`: APP_FILTER with useFactory, given `filterOptions`; `global-options`: useGlobalFilters with ModuleRef and `filterOptions`;
   * `provider-options`: APP_FILTER with useClass and `filterOptions` provided as DATABASE_EXCEPTION_FILTER_OPTIONS.
   */
  filter?: 'provider' | 'global' | 'global-module-ref' | 'factory' | 'global-options' | 'provider-options';
  filterOptions?: DatabaseExceptionFilterOptions;
  /** Create the tables (once per scratch database). Default true. */
  schema?: boolean;
}

/** An app with FailingRoutesController on a scratch database (schema created), logging into a LogCapture. */
export async function createFailingRoutesApp(options: FailingRoutesAppOptions): Promise<{ app: INestApplication; logs: LogCapture }> {
  const { platform = 'express', filter = 'provider', schema = true } = options;
  const logs = new LogCapture();
  const moduleRef = await Test.createTestingModule({
    imports: [SecureDatabaseModule.forRoot({ url: options.url, sslRootCert: options.caPem, appEnv: options.appEnv })],
    controllers: [FailingRoutesController],
    providers: [
      { provide: FAILING_ROUTE_DEPS, useValue: options.deps },
      ...(filter === 'provider' || filter === 'provider-options' ? [{ provide: APP_FILTER, useClass: DatabaseExceptionFilter }] : []),
      ...(filter === 'provider-options' ? [{ provide: DATABASE_EXCEPTION_FILTER_OPTIONS, useValue: options.filterOptions }] : []),
      ...(filter === 'factory'
        ? [
            {
              provide: APP_FILTER,
              useFactory: (adapterHost: HttpAdapterHost, ref: ModuleRef) => new DatabaseExceptionFilter(adapterHost, ref, options.filterOptions),
              inject: [HttpAdapterHost, ModuleRef],
            },
          ]
        : []),
    ],
  })
    .setLogger(logs)
    .compile();
  const app = platform === 'fastify' ? moduleRef.createNestApplication<NestFastifyApplication>(new FastifyAdapter()) : moduleRef.createNestApplication();
  app.useLogger(logs);
  if (filter === 'global') app.useGlobalFilters(new DatabaseExceptionFilter(app.get(HttpAdapterHost)));
  if (filter === 'global-module-ref') app.useGlobalFilters(new DatabaseExceptionFilter(app.get(HttpAdapterHost), app.get(ModuleRef)));
  if (filter === 'global-options') app.useGlobalFilters(new DatabaseExceptionFilter(app.get(HttpAdapterHost), app.get(ModuleRef), options.filterOptions));
  await app.init();
  if (platform === 'fastify') await (app as NestFastifyApplication).getHttpAdapter().getInstance().ready();
  if (schema) await app.get<pg.Pool>(getPoolToken()).query(SCHEMA_SQL);
  return { app, logs };
}
