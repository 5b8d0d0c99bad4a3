import { type ArgumentsHost, Catch, type ExceptionFilter, HttpStatus, Inject, Logger, Optional } from '@nestjs/common';
import { HttpAdapterHost, ModuleRef } from '@nestjs/core';
import pg from 'pg';
import { normalizeAppEnv } from '../config/resolve-database-config.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import { toDatabaseError } from '../errors/to-database-error.js';
import type { DatabasePool } from '../pool/database-pool.js';
import { getDatabasePoolToken } from '../secure-database.utils.js';
import { type DatabaseErrorResponse, databaseErrorStatus, reasonPhrase } from './database-error-status.js';
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

/** What the filter hands the `status` and `body` hooks besides the (sanitized) error. */
export interface DatabaseErrorReplyContext extends DatabaseErrorResponse {
  /** The body the filter would send: a starting point to extend or ignore. */
  defaultBody: DatabaseErrorBody;
  /** True in development/test (the default connection's appEnv, else APP_ENV): driver text may be shown. */
  verbose: boolean;
}

/**
 * Shapes the HTTP answer. The hooks receive the sanitized error (in production its message and cause
 * carry no driver text; `error.constraint`, `error.table`, `error.column` and `error.schema` are there
 * in every environment) and never see SQL or values. The request id header, Retry-After (from the
 * library's mapping) and the log line stay the filter's.
 */
export interface DatabaseExceptionFilterOptions {
  /** The status to send; default the library's mapping (`context.status`). */
  status?: (error: SecureDatabaseError, context: DatabaseErrorReplyContext) => number;
  /** The JSON body to send; default `context.defaultBody`. `context.status` is the status being sent. */
  body?: (error: SecureDatabaseError, context: DatabaseErrorReplyContext) => object;
}

/** Injection token for DatabaseExceptionFilterOptions when the filter is an APP_FILTER with useClass. */
export const DATABASE_EXCEPTION_FILTER_OPTIONS = Symbol('DATABASE_EXCEPTION_FILTER_OPTIONS');

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
 *   providers: [{ provide: APP_FILTER, useFactory: (a, m) => new DatabaseExceptionFilter(a, m, { body }), inject: [HttpAdapterHost, ModuleRef] }]
 *   app.useGlobalFilters(new DatabaseExceptionFilter(app.get(HttpAdapterHost), app.get(ModuleRef), { body }))
 */
@Catch(SecureDatabaseError, pg.DatabaseError)
export class DatabaseExceptionFilter implements ExceptionFilter<SecureDatabaseError | pg.DatabaseError> {
  private readonly logger = new Logger('DatabaseExceptionFilter');
  private verboseFromPool?: boolean;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Optional() private readonly moduleRef?: ModuleRef,
    @Optional() @Inject(DATABASE_EXCEPTION_FILTER_OPTIONS) private readonly options: DatabaseExceptionFilterOptions = {},
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
    // A 500 is the server's own fault (credentials, TLS, a missing table): in production the client
    // learns no more than that, not which of them (the log line has the real code and SQLSTATE).
    const exposed = status !== HttpStatus.INTERNAL_SERVER_ERROR || verbose;
    const defaultBody: DatabaseErrorBody = {
      statusCode: status,
      message,
      error: reasonPhrase(status),
      code: exposed ? error.code : 'DB_INTERNAL_ERROR',
      ...(exposed && error.sqlstate ? { sqlstate: error.sqlstate } : {}),
      ...(driver ? { detail: driver.message } : {}),
    };
    const reply = this.shape(error, { status, message, retryAfterSeconds, defaultBody, verbose });
    const where = `${adapter.getRequestMethod(request)} ${routePatternOf(request)}`;
    // The status actually sent, so the line matches the access log.
    this.log(reply.status, `${where} -> ${reply.status} ${summary(error)} [request ${requestId}]`, driver);

    if (adapter.isHeadersSent(response)) {
      adapter.end(response);
      return;
    }
    adapter.setHeader(response, REQUEST_ID_HEADER, requestId);
    if (retryAfterSeconds !== undefined) adapter.setHeader(response, 'Retry-After', String(retryAfterSeconds));
    adapter.reply(response, reply.body, reply.status);
  }

  /** Runs the app's hooks; one that throws or returns nonsense falls back to the default answer. */
  private shape(error: SecureDatabaseError, context: DatabaseErrorReplyContext): { status: number; body: object } {
    const { status: statusHook, body: bodyHook } = this.options;
    if (!statusHook && !bodyHook) return { status: context.status, body: context.defaultBody };
    try {
      const status = statusHook ? statusHook(error, context) : context.status;
      if (!Number.isInteger(status) || status < 400 || status > 599) throw new TypeError(`the status hook returned ${String(status)}, not a 4xx or 5xx status`);
      const body = bodyHook ? bodyHook(error, { ...context, status }) : context.defaultBody;
      if (typeof body !== 'object' || body === null) throw new TypeError('the body hook returned no object');
      return { status, body };
    } catch (hookError) {
      // In production only the class: the hook's message may quote what it read off the error.
      const what = hookError instanceof Error ? (context.verbose ? `${hookError.name}: ${hookError.message}` : hookError.name) : typeof hookError;
      this.logger.error(`the status/body hook threw (${what}); the default answer was sent`);
      return { status: context.status, body: context.defaultBody };
    }
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
