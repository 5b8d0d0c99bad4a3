import { type ArgumentsHost, Catch, type ExceptionFilter, HttpStatus, Logger, Optional } from '@nestjs/common';
import { HttpAdapterHost, ModuleRef } from '@nestjs/core';
import pg from 'pg';
import { normalizeAppEnv } from '../config/resolve-database-config.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import { toDatabaseError } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { getDatabasePoolToken } from '../secure-database.utils.js';
import { databaseErrorStatus, reasonPhrase } from './database-error-status.js';
import { REQUEST_ID_HEADER, requestIdOf, routePatternOf } from './request-context.js';

/** The JSON body sent for a database error: Nest's usual shape plus the library's stable code. */
export interface DatabaseErrorBody {
  statusCode: number;
  /** A fixed text per code, never the driver's message. */
  message: string;
  error: string;
  /** The library's code; `DB_INTERNAL_ERROR` for every 500 in production. */
  code: SecureDatabaseError['code'] | 'DB_INTERNAL_ERROR';
  /** The SQLSTATE, except on 500s in production. */
  sqlstate?: string;
  /** development/test only: the driver's message (may name tables, columns and values). */
  detail?: string;
}

/**
 * Answers the library's typed errors and raw node-postgres DatabaseErrors (from `@InjectPool()`) with
 * a sanitized JSON body and status (see databaseErrorStatus), through the HttpAdapterHost so Express
 * and Fastify both work. Anything else is not caught and reaches Nest's own handling untouched.
 *
 * In production (the default connection's appEnv, else APP_ENV; anything but development/test) neither
 * the body nor the log carries the driver message, detail, names, SQL or values: the log line has the
 * SQLSTATE, the library code, method + route pattern and the request id (x-request-id, echoed back).
 *
 *   providers: [{ provide: APP_FILTER, useClass: DatabaseExceptionFilter }]
 *   app.useGlobalFilters(new DatabaseExceptionFilter(app.get(HttpAdapterHost), app.get(ModuleRef)))
 */
@Catch(SecureDatabaseError, pg.DatabaseError)
export class DatabaseExceptionFilter implements ExceptionFilter<SecureDatabaseError | pg.DatabaseError> {
  private readonly logger = new Logger('DatabaseExceptionFilter');
  private verboseFromPool?: boolean;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Optional() private readonly moduleRef?: ModuleRef,
  ) {}

  catch(exception: SecureDatabaseError | pg.DatabaseError, host: ArgumentsHost): void {
    const verbose = this.verbose();
    const error = toDatabaseError(exception, { verbose });
    const { status, message, retryAfterSeconds } = databaseErrorStatus(error);
    const driver = verbose ? driverFacts(exception, error) : undefined;

    if (host.getType() !== 'http') {
      this.log(status, `${host.getType()} call failed: ${summary(error)}`, driver);
      throw error; // mapped without driver text in production
    }

    const request = host.switchToHttp().getRequest<unknown>();
    const response = host.switchToHttp().getResponse<unknown>();
    const adapter = this.adapterHost.httpAdapter;
    const requestId = requestIdOf(request);
    const where = `${adapter.getRequestMethod(request)} ${routePatternOf(request)}`;
    this.log(status, `${where} -> ${status} ${summary(error)} [request ${requestId}]`, driver);

    if (adapter.isHeadersSent(response)) {
      adapter.end(response);
      return;
    }
    // A 500 is the server's own fault (credentials, TLS, a missing table): in production the client
    // learns no more than that, not which of them (the log line has the real code and SQLSTATE).
    const exposed = status !== HttpStatus.INTERNAL_SERVER_ERROR || verbose;
    const body: DatabaseErrorBody = {
      statusCode: status,
      message,
      error: reasonPhrase(status),
      code: exposed ? error.code : 'DB_INTERNAL_ERROR',
      ...(exposed && error.sqlstate ? { sqlstate: error.sqlstate } : {}),
      ...(driver ? { detail: driver.message } : {}),
    };
    adapter.setHeader(response, REQUEST_ID_HEADER, requestId);
    if (retryAfterSeconds !== undefined) adapter.setHeader(response, 'Retry-After', String(retryAfterSeconds));
    adapter.reply(response, body, status);
  }

  private log(status: number, line: string, driver?: { message: string; detail?: string }): void {
    const text = driver ? `${line}: ${driver.message}${driver.detail ? ` (detail: ${driver.detail})` : ''}` : line;
    if (status >= 500) this.logger.error(text);
    else this.logger.warn(text);
  }

  /** The default connection's verbosity when the module is in this app, else APP_ENV (production unless development/test). */
  private verbose(): boolean {
    if (this.verboseFromPool !== undefined) return this.verboseFromPool;
    try {
      const db = this.moduleRef?.get<DatabasePool>(getDatabasePoolToken(), { strict: false });
      if (db) return (this.verboseFromPool = db.config.verboseErrors);
    } catch {
      // no default connection registered: fall through to the environment
    }
    return normalizeAppEnv(process.env.APP_ENV) !== 'production';
  }
}

function summary(error: SecureDatabaseError): string {
  return error.sqlstate ? `${error.code} (SQLSTATE ${error.sqlstate})` : error.code;
}

/** The driver's own message and detail, for development bodies and logs only. */
function driverFacts(exception: unknown, error: SecureDatabaseError): { message: string; detail?: string } {
  const driver = exception instanceof pg.DatabaseError ? exception : error.cause;
  if (!(driver instanceof Error)) return { message: error.message };
  const detail = (driver as Partial<pg.DatabaseError>).detail;
  return { message: driver.message, ...(detail ? { detail } : {}) };
}
