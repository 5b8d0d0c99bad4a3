import { randomUUID } from 'node:crypto';

export const REQUEST_ID_HEADER = 'x-request-id';

// A caller-supplied id ends up in logs and a response header: only plain tokens are kept.
const SAFE_REQUEST_ID = /^[\w.:@-]{1,128}$/;

interface HttpRequestLike {
  /** Express: set by pino-http (nestjs-pino) or another request-id middleware. */
  id?: unknown;
  /** Fastify: the Node request, where pino-http puts its id (Fastify's own `id` is a per-process counter). */
  raw?: { id?: unknown };
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

/**
 * One id per request in every log line: the id the request logger already gave it (pino-http's
 * `req.id`, a number by default), else the caller's x-request-id, else a new UUID. Only plain tokens
 * are reused: the id goes into logs and a response header.
 */
export function requestIdOf(request: unknown): string {
  const req = (request ?? {}) as HttpRequestLike;
  const header = req.headers?.[REQUEST_ID_HEADER];
  for (const candidate of [req.raw ? req.raw.id : req.id, Array.isArray(header) ? header[0] : header]) {
    const value = typeof candidate === 'number' && Number.isSafeInteger(candidate) ? String(candidate) : candidate;
    if (typeof value === 'string' && SAFE_REQUEST_ID.test(value)) return value;
  }
  return randomUUID();
}
