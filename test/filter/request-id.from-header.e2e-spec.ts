import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { createPinoApp, linesOfRequest, type PinoLine, UUID } from './pino-app.js';

// pino-http configured to adopt the caller's x-request-id (a proxy's or the client's), else a UUID.
const fromHeader = (req: IncomingMessage): string => {
  const header = req.headers['x-request-id'];
  return typeof header === 'string' && /^[\w.:@-]{1,128}$/.test(header) ? header : randomUUID();
};

describe("request ids with nestjs-pino adopting the caller's x-request-id", () => {
  const lines: PinoLine[] = [];
  let app: INestApplication;
  beforeAll(async () => {
    app = await createPinoApp(lines, fromHeader);
  });
  afterAll(() => app.close());

  it("the caller's id is in every line of the request and echoed back", async () => {
    lines.length = 0;
    const response = await request(app.getHttpServer()).get('/divide').set('x-request-id', 'edge-7f3a:42').expect(400);
    const { messages, filterLine } = linesOfRequest(lines, 'edge-7f3a:42');
    expect(filterLine).toBe('GET /divide -> 400 DB_INVALID_INPUT (SQLSTATE 22012) [request edge-7f3a:42]');
    expect(messages).toEqual([filterLine, 'request completed']);
    expect(response.headers['x-request-id']).toBe('edge-7f3a:42');
  });

  it("without one, pino-http's UUID is the only id: in every line and echoed back", async () => {
    lines.length = 0;
    const response = await request(app.getHttpServer()).get('/divide').expect(400);
    const ids = new Set(JSON.stringify(lines).match(UUID));
    expect(ids.size).toBe(1);
    const [id] = ids;
    expect(linesOfRequest(lines, id).messages).toEqual([`GET /divide -> 400 DB_INVALID_INPUT (SQLSTATE 22012) [request ${id}]`, 'request completed']);
    expect(response.headers['x-request-id']).toBe(id);
  });
});
