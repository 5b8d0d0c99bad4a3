import type { LoggerService } from '@nestjs/common';

/** A LoggerService that keeps every line (message, context and any stack) for assertions; `app.useLogger(capture)`. */
export class LogCapture implements LoggerService {
  readonly lines: string[] = [];

  log(message: unknown, ...rest: unknown[]): void {
    this.keep('log', message, rest);
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.keep('error', message, rest);
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.keep('warn', message, rest);
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.keep('debug', message, rest);
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.keep('verbose', message, rest);
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.keep('fatal', message, rest);
  }

  /** Everything logged so far, as one string to search. */
  text(): string {
    return this.lines.join('\n');
  }

  clear(): void {
    this.lines.length = 0;
  }

  private keep(level: string, message: unknown, rest: unknown[]): void {
    const parts = [message, ...rest].map((part) => (typeof part === 'string' ? part : part instanceof Error ? `${part.message}\n${part.stack}` : JSON.stringify(part)));
    this.lines.push(`[${level}] ${parts.join(' ')}`);
  }
}
