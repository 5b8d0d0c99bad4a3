import type { IncomingMessage } from 'node:http';
import { Controller, Get, type INestApplication } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { Logger, LoggerModule } from 'nestjs-pino';
import { DatabaseExceptionFilter, DatabaseService, SecureDatabaseModule, sql } from '../../src/index.js';
import { harness } from '../support/harness.js';

@Controller()
class DivideController {
  constructor(private readonly db: DatabaseService) {}

  @Get('divide')
  divide(): Promise<number> {
    return this.db.fetchval<number>(sql`SELECT 1 / ${0}::int`); // 22012 → 400 DB_INVALID_INPUT
  }
}

export interface PinoLine {
  msg: string;
  context?: string;
  req?: { id?: unknown };
}

/**
 * An app logging through nestjs-pino (pino-http underneath) into `lines`, with a route that fails in
 * the database. nestjs-pino keeps one pino-http instance per process: one app per spec file.
 */
export async function createPinoApp(lines: PinoLine[], genReqId?: (req: IncomingMessage) => string): Promise<INestApplication> {
  const h = harness();
  const stream = { write: (line: string) => void lines.push(JSON.parse(line) as PinoLine) };
  const moduleRef = await Test.createTestingModule({
    imports: [
      LoggerModule.forRoot({ pinoHttp: [{ level: 'info', ...(genReqId ? { genReqId } : {}) }, stream] }),
      SecureDatabaseModule.forRoot({ url: h.tls.url(), sslRootCert: h.caPem, appEnv: 'production' }),
    ],
    controllers: [DivideController],
    providers: [{ provide: APP_FILTER, useClass: DatabaseExceptionFilter }],
  }).compile();
  const app = moduleRef.createNestApplication({ bufferLogs: true });
  app.useLogger(app.get(Logger));
  await app.init();
  return app;
}

/** The lines logged for the request with this id, and the filter's own line among them. */
export function linesOfRequest(lines: PinoLine[], id: unknown): { messages: string[]; filterLine?: string } {
  const mine = lines.filter((line) => line.req?.id === id);
  return { messages: mine.map((line) => line.msg), filterLine: mine.find((line) => line.context === 'DatabaseExceptionFilter')?.msg };
}

export const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
