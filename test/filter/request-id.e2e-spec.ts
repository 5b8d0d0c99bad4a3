import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createPinoApp, linesOfRequest, type PinoLine, UUID } from './pino-app.js';

// pino-http's defaults, as most nestjs-pino apps run it: ids are numbers from a per-process counter.
describe("request ids with nestjs-pino's defaults: the filter reuses pino-http's id", () => {
  const lines: PinoLine[] = [];
  let app: INestApplication;
  beforeAll(async () => {
    app = await createPinoApp(lines);
  });
  afterAll(() => app.close());

  it.each([
    ['without a caller id', {}],
    ['even when the caller sent one (pino-http ignores it by default; the id in the logs wins)', { 'x-request-id': 'from-caller' }],
  ])('%s: one id in every line of the request, echoed as x-request-id', async (_case, headers: Record<string, string>) => {
    lines.length = 0;
    const response = await request(app.getHttpServer()).get('/divide').set(headers).expect(400);
    expect(response.body).toMatchObject({ code: 'DB_INVALID_INPUT', sqlstate: '22012' });

    const pinoId = lines.find((line) => line.msg === 'request completed')?.req?.id;
    expect(typeof pinoId).toBe('number');
    const { messages, filterLine } = linesOfRequest(lines, pinoId);
    expect(filterLine).toBe(`GET /divide -> 400 DB_INVALID_INPUT (SQLSTATE 22012) [request ${String(pinoId)}]`);
    expect(messages).toEqual([filterLine, 'request completed']);
    expect(response.headers['x-request-id']).toBe(String(pinoId));
    expect(JSON.stringify(lines)).not.toMatch(UUID); // no second, made-up id
  });
});
