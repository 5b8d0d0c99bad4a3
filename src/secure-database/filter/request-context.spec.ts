import { describe, expect, it } from '@jest/globals';
import { requestIdOf, routePatternOf } from './request-context.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

describe('request context', () => {
  it('keeps a plain caller request id', () => {
    expect(requestIdOf({ headers: { 'x-request-id': 'abc-123_x.y:z@w' } })).toBe('abc-123_x.y:z@w');
    expect(requestIdOf({ headers: { 'x-request-id': ['first-id', 'second'] } })).toBe('first-id');
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
