import type { IncomingMessage, ServerResponse } from 'node:http';
import { type ExecutionContext, createParamDecorator } from '@nestjs/common';

// One signal per response, however many parameters ask for it.
const signals = new WeakMap<ServerResponse, AbortSignal>();

/** The Node response under Express's (the object itself) or Fastify's reply (`.raw`). */
function rawResponse(response: unknown): ServerResponse | undefined {
  const raw = (response as { raw?: unknown })?.raw ?? response;
  return raw && typeof (raw as ServerResponse).once === 'function' && 'writableFinished' in (raw as object) ? (raw as ServerResponse) : undefined;
}

/**
 * An AbortSignal that aborts when the HTTP client goes away before the response was sent (its
 * connection closed: a cancelled fetch, a closed tab, a proxy's timeout). Node emits 'close' on the
 * response both when it finished and when the connection dropped first; only the latter aborts.
 * Express and Fastify (the raw Node response under the reply). Outside HTTP (or with an adapter
 * whose response is not a Node one) the signal never aborts.
 */
export function requestSignalOf(response: unknown, request?: unknown): AbortSignal {
  const res = rawResponse(response);
  if (!res) return new AbortController().signal;
  const known = signals.get(res);
  if (known) return known;
  const controller = new AbortController();
  signals.set(res, controller.signal);
  const req = ((request as { raw?: unknown })?.raw ?? request) as IncomingMessage | undefined;
  const gone = () => {
    if (!res.writableFinished) controller.abort();
  };
  // Already gone by the time the handler runs (a guard or pipe awaited): abort at once.
  if (res.destroyed || req?.destroyed || res.socket?.destroyed) gone();
  else res.once('close', gone);
  return controller.signal;
}

/**
 * Parameter decorator: the request's AbortSignal (see requestSignalOf), to pass on as `{ signal }`
 * so a query whose client disconnected is cancelled on the server instead of running on for nobody.
 *
 *   @Get('report') report(@RequestSignal() signal: AbortSignal) { return this.db.fetch(sql`…`, { signal }); }
 */
export const RequestSignal = createParamDecorator((_data: unknown, ctx: ExecutionContext): AbortSignal => {
  if (ctx.getType() !== 'http') return new AbortController().signal;
  const http = ctx.switchToHttp();
  return requestSignalOf(http.getResponse(), http.getRequest());
});
