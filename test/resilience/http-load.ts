import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

export interface RequestSpec {
  method: 'GET' | 'POST' | 'PATCH';
  path: string;
  body?: Record<string, unknown>;
  /** The statuses a healthy app answers with. */
  expected: number[];
}

/** One request as the client saw it. Times are performance.now() of the test process. */
export interface Outcome {
  spec: RequestSpec;
  startedAt: number;
  endedAt: number;
  /** The HTTP status; undefined when no response arrived. */
  status?: number;
  /** No response: the client gave up (`timeout`, i.e. a hung request) or the connection failed (`network`). */
  failure?: 'timeout' | 'network';
  /** For `network`: the socket error code (ECONNREFUSED, UND_ERR_SOCKET, …). */
  failureCode?: string;
  body?: unknown;
  retryAfter?: string | null;
}

/** Sends one request; never throws. A request still unanswered after `timeoutMs` is aborted and counted as `timeout`. */
export async function send(baseUrl: string, spec: RequestSpec, timeoutMs: number): Promise<Outcome> {
  const startedAt = performance.now();
  try {
    const response = await fetch(`${baseUrl}${spec.path}`, {
      method: spec.method,
      headers: spec.body ? { 'content-type': 'application/json' } : undefined,
      body: spec.body ? JSON.stringify(spec.body) : undefined,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await response.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON: kept as text
    }
    return { spec, startedAt, endedAt: performance.now(), status: response.status, body, retryAfter: response.headers.get('retry-after') };
  } catch (error) {
    const name = (error as { name?: string }).name;
    const timedOut = name === 'TimeoutError' || name === 'AbortError';
    const cause = (error as { cause?: { code?: string } }).cause;
    return { spec, startedAt, endedAt: performance.now(), failure: timedOut ? 'timeout' : 'network', failureCode: cause?.code };
  }
}

export interface LoadOptions {
  concurrency: number;
  /** The next request for `worker`; undefined ends that worker. */
  next(worker: number): RequestSpec | undefined;
  onOutcome(outcome: Outcome): void;
  /** Per request; past it the request counts as hung. */
  timeoutMs: number;
  /** A worker whose request failed waits this long before the next, so an outage is not a busy loop. */
  pauseAfterFailureMs?: number;
}

/** A closed loop of `concurrency` workers, each sending its next request as soon as the previous one ended. */
export class LoadRun {
  private running = true;
  private inFlightCount = 0;
  private readonly finished: Promise<void>;

  constructor(
    private readonly baseUrl: string,
    private readonly options: LoadOptions,
  ) {
    this.finished = Promise.all(Array.from({ length: options.concurrency }, (_, worker) => this.work(worker))).then(() => undefined);
  }

  /** Requests sent and not yet answered. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  /** Ends when every worker ran out of requests (or stop() was called and in-flight requests ended). */
  done(): Promise<void> {
    return this.finished;
  }

  /** Sends nothing new; resolves when the requests in flight have ended. */
  stop(): Promise<void> {
    this.running = false;
    return this.finished;
  }

  private async work(worker: number): Promise<void> {
    while (this.running) {
      const spec = this.options.next(worker);
      if (!spec) return;
      this.inFlightCount++;
      const outcome = await send(this.baseUrl, spec, this.options.timeoutMs);
      this.inFlightCount--;
      this.options.onOutcome(outcome);
      if (outcome.status === undefined || outcome.status >= 500) await sleep(this.options.pauseAfterFailureMs ?? 10);
    }
  }
}

/** Sends `specs` through `concurrency` workers; resolves with every outcome once all have ended. */
export async function sendAll(baseUrl: string, specs: RequestSpec[], concurrency: number, timeoutMs = 15_000): Promise<Outcome[]> {
  const queue = [...specs];
  const outcomes: Outcome[] = [];
  await new LoadRun(baseUrl, { concurrency, timeoutMs, next: () => queue.shift(), onOutcome: (o) => outcomes.push(o) }).done();
  return outcomes;
}

/** Sends `spec` every 20 ms until it gets one of its expected answers or `withinMs` has passed; returns the last outcome. */
export async function untilExpected(baseUrl: string, spec: RequestSpec, withinMs: number): Promise<Outcome> {
  const deadline = performance.now() + withinMs;
  for (;;) {
    const outcome = await send(baseUrl, spec, withinMs);
    if ((outcome.status !== undefined && spec.expected.includes(outcome.status)) || performance.now() > deadline) return outcome;
    await sleep(20);
  }
}
