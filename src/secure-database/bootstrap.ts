import { ConsoleLogger, Logger } from '@nestjs/common';
import { SecureDatabaseError } from './errors/secure-database.error.js';

/**
 * Nest's ConsoleLogger, minus the repeat of a database startup failure. The module logs such a
 * failure once, as one line with its cause (sanitized in production) and the fix; Nest's
 * ExceptionHandler would then print the same error again with its stack and `cause`. Every other
 * message, errors included, is logged as ConsoleLogger logs it (its options apply: `json`, `logLevels` …).
 */
export class SecureDatabaseLogger extends ConsoleLogger {
  override error(message: unknown, ...rest: unknown[]): void {
    if (message instanceof SecureDatabaseError && rest.at(-1) === 'ExceptionHandler') return;
    super.error(message, ...rest);
  }
}

/**
 * Runs main.ts's `bootstrap` so that a failed start is one line and exit code 1. A database startup
 * failure was already logged by the module (cause and fix): nothing more is printed (Node would
 * otherwise report the rejection with its stack). Any other failure is logged once, its message only.
 * With `nest new`'s main.ts: `logger: new SecureDatabaseLogger()` in NestFactory.create, and
 * `runBootstrap(bootstrap)` in place of `bootstrap()`.
 */
export function runBootstrap(bootstrap: () => Promise<unknown>): void {
  bootstrap().catch((error: unknown) => {
    if (!(error instanceof SecureDatabaseError)) new Logger('Bootstrap').error(`Startup failed: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
    // Nothing may keep a failed start alive (timers, sockets of a half-built app).
    setImmediate(() => process.exit(1)).unref();
  });
}
