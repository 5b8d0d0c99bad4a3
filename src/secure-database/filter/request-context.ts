import { randomUUID } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';

// A caller-supplied id ends up in logs and a response header: only plain tokens are kept.
const SAFE_REQUEST_ID = /^[\w.:@-]{1,128}$/;

interface HttpRequestLike {
  headers?: Record<string, string | string[] | undefined>;
  /** Express: the matched route (its path is the pattern, e.g. /items/:id). */
  route?: { path?: unknown };
  baseUrl?: string;
  /** Fastify 4+: the matched route. */
  routeOptions?: { url?: unknown };
}

/** The route pattern that matched (`/items/:id`), never the raw URL: URLs carry ids and query values. */
export function routePatternOf(request: unknown): string {
  const req = (request ?? {}) as HttpRequestLike;
  if (typeof req.route?.path === 'string') return `${req.baseUrl ?? ''}${req.route.path}`;
  if (typeof req.routeOptions?.url === 'string') return req.routeOptions.url;
  return '(unmatched route)';
}

/** The caller's x-request-id when it is a plain token, else a new UUID. */
export function requestIdOf(request: unknown): string {
  const header = (request as HttpRequestLike | undefined)?.headers?.[REQUEST_ID_HEADER];
  const value = Array.isArray(header) ? header[0] : header;
  return value && SAFE_REQUEST_ID.test(value) ? value : randomUUID();
}
