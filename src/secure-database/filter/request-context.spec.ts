import { describe, expect, it } from '@jest/globals';
import { requestIdOf, routePatternOf } from './request-context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request context', () => {
  it('keeps a plain caller request id', () => {
    expect(requestIdOf({ headers: { 'x-request-id': 'abc-123_x.y:z@w' } })).toBe('abc-123_x.y:z@w');
    expect(requestIdOf({ headers: { 'x-request-id': ['first-id', 'second'] } })).toBe('first-id');
  });

  it("reuses the request logger's id (pino-http's req.id, on Express or under Fastify's raw request) before the header", () => {
    expect(requestIdOf({ id: 7, headers: { 'x-request-id': 'from-caller' } })).toBe('7'); // pino-http's default ids are numbers
    expect(requestIdOf({ id: 'req-abc', headers: {} })).toBe('req-abc');
    // Fastify: its own request.id is a per-process counter nobody logged; pino-http's id sits on raw.
    expect(requestIdOf({ id: 'req-1', raw: { id: 'pino-9' }, headers: {} })).toBe('pino-9');
    expect(requestIdOf({ id: 'req-1', raw: {}, headers: { 'x-request-id': 'from-caller' } })).toBe('from-caller');
  });

  it.each([{ id: 'two words' }, { id: 1.5 }, { id: { nested: true } }, { id: '' }])('skips an unusable logger id %j for the header', (ids) => {
    expect(requestIdOf({ ...ids, headers: { 'x-request-id': 'from-caller' } })).toBe('from-caller');
    expect(requestIdOf({ ...ids, headers: {} })).toMatch(UUID);
  });

  it.each([undefined, '', 'two words', 'line\nbreak', "quote'", 'x'.repeat(129)])('replaces %j with a UUID', (header) => {
    expect(requestIdOf({ headers: header === undefined ? {} : { 'x-request-id': header } })).toMatch(UUID);
  });

  it('reads the route pattern from Express or Fastify, never the URL', () => {
    expect(routePatternOf({ route: { path: '/items/:id' }, baseUrl: '', url: '/items/42' })).toBe('/items/:id');
    expect(routePatternOf({ routeOptions: { url: '/items/:id' }, url: '/items/42' })).toBe('/items/:id');
    expect(routePatternOf({ url: '/items/42' })).toBe('(unmatched route)');
  });
});
