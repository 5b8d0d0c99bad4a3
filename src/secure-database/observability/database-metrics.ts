// The parts of @opentelemetry/api's Meter used here, declared structurally: the API is an optional peer,
// so neither this code nor the published .d.ts files may need it to be installed.
type Attributes = Record<string, string | number | boolean>;
type Histogram = { record(value: number, attributes?: Attributes): void };
type Counter = { add(value: number, attributes?: Attributes): void };
/** An observable instrument, only ever handed back to the meter. */
type Observable = object;
type BatchObservableCallback = (result: { observe(observable: Observable, value: number, attributes?: Attributes): void }) => void;
type InstrumentOptions = { unit?: string; description?: string; advice?: { explicitBucketBoundaries?: number[] } };

export interface Meter {
  createHistogram(name: string, options?: InstrumentOptions): Histogram;
  createCounter(name: string, options?: InstrumentOptions): Counter;
  createObservableUpDownCounter(name: string, options?: InstrumentOptions): Observable;
  createObservableCounter(name: string, options?: InstrumentOptions): Observable;
  addBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]): void;
  removeBatchObservableCallback(callback: BatchObservableCallback, observables: Observable[]): void;
}

/** An OpenTelemetry MeterProvider, as far as the module uses it. */
export interface MeterProvider {
  getMeter(name: string, version?: string): Meter;
}

/** The meter every pool of the module records through (its instrumentation scope). */
export const METER_NAME = 'nestjs-secure-postgres';

// The semantic conventions' advice for db.client.operation.duration (seconds); used for the connection times too.
const DURATION_BUCKETS_S = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10];

/** What the metrics read from a pool when the reader collects (never per statement). */
export interface PoolGauges {
  stats(): { total: number; idle: number; waiting: number; tlsAssertionsPassed: number; tlsAssertionsFailed: number };
}

/** The counters a statement cache keeps (service/statement-cache.ts). */
export interface StatementCacheCounts {
  readonly hits: number;
  readonly evictions: number;
}

/** Who a pool is, for its attributes: set once, never from a statement. */
export interface PoolIdentity {
  /** db.client.connection.pool.name: the connection's name, distinct per named connection, replica and direct pool. */
  poolName: string;
  database: string;
  host: string;
  port: number;
  max: number;
}

interface Instruments {
  operationDuration: Histogram;
  timeouts: Counter;
  createTime: Histogram;
  waitTime: Histogram;
  rowCapRefusals: Counter;
  connectionCount: Observable;
  connectionMax: Observable;
  pendingRequests: Observable;
  tlsAssertions: Observable;
  cacheHits: Observable;
  cacheEvictions: Observable;
}

// One set of instruments per meter: the pools of an app share them and differ by attributes.
const instrumentsByMeter = new WeakMap<Meter, Instruments>();

function instrumentsOf(meter: Meter): Instruments {
  let instruments = instrumentsByMeter.get(meter);
  if (!instruments) {
    const seconds = (description: string) => ({ unit: 's', description, advice: { explicitBucketBoundaries: DURATION_BUCKETS_S } });
    const of = (unit: string, description: string) => ({ unit, description });
    instruments = {
      operationDuration: meter.createHistogram('db.client.operation.duration', seconds('Duration of database client operations.')),
      createTime: meter.createHistogram('db.client.connection.create_time', seconds('The time it took to create a new connection (TCP, TLS, authentication and the TLS assertion).')),
      waitTime: meter.createHistogram('db.client.connection.wait_time', seconds('The time it took to obtain an open connection from the pool.')),
      timeouts: meter.createCounter('db.client.connection.timeouts', of('{timeout}', 'The number of connection timeouts that have occurred trying to obtain a connection from the pool.')),
      rowCapRefusals: meter.createCounter('secure_postgres.row_cap.refusals', of('{statement}', 'Results refused by the row cap (maxRows, DATABASE_MAX_ROWS): ResultTooLargeError.')),
      connectionCount: meter.createObservableUpDownCounter(
        'db.client.connection.count',
        of('{connection}', 'The number of connections that are currently in state described by the state attribute.'),
      ),
      connectionMax: meter.createObservableUpDownCounter('db.client.connection.max', of('{connection}', 'The maximum number of open connections allowed.')),
      pendingRequests: meter.createObservableUpDownCounter('db.client.connection.pending_requests', of('{request}', 'The number of current pending requests for an open connection.')),
      tlsAssertions: meter.createObservableCounter(
        'secure_postgres.tls.assertions',
        of('{connection}', 'New connections that passed / failed the TLS assertion (secure_postgres.tls.assertion.outcome).'),
      ),
      cacheHits: meter.createObservableCounter('secure_postgres.statement_cache.hits', of('{statement}', 'Statements run as a prepared statement their connection had already parsed.')),
      cacheEvictions: meter.createObservableCounter(
        'secure_postgres.statement_cache.evictions',
        of('{statement}', 'Prepared statements closed to keep a connection within the statement cache size.'),
      ),
    };
    instrumentsByMeter.set(meter, instruments);
  }
  return instruments;
}

function observablesOf(instruments: Instruments): Observable[] {
  const { connectionCount, connectionMax, pendingRequests, tlsAssertions, cacheHits, cacheEvictions } = instruments;
  return [connectionCount, connectionMax, pendingRequests, tlsAssertions, cacheHits, cacheEvictions];
}

/** The meter of `provider` (the module's scope). */
export function meterOf(provider: MeterProvider): Meter {
  return provider.getMeter(METER_NAME);
}

/**
 * The OpenTelemetry metrics of one pool, following the semantic conventions for database clients:
 * db.client.operation.duration (stable) and the db.client.connection.* pool metrics (development),
 * each pool under its own db.client.connection.pool.name, plus the module's own secure_postgres.*
 * counters. Attributes are fixed per pool (and per command / error code): never a value nor a text.
 */
export class PoolMetrics {
  private readonly instruments: Instruments;
  private readonly pool: Attributes;
  private readonly operationBase: Attributes;
  /** Attributes per command and outcome, made once each: recording allocates nothing after the first. */
  private readonly operationAttributes = new Map<string, Attributes>();
  private readonly caches: StatementCacheCounts[] = [];
  private readonly observe: BatchObservableCallback;

  constructor(
    private readonly meter: Meter,
    identity: PoolIdentity,
    gauges: PoolGauges,
  ) {
    const instruments = (this.instruments = instrumentsOf(meter));
    const poolName = { 'db.client.connection.pool.name': identity.poolName };
    this.pool = poolName;
    this.operationBase = {
      'db.system.name': 'postgresql',
      'db.namespace': identity.database,
      'server.address': identity.host,
      'server.port': identity.port,
      ...poolName,
    };
    const idle = { ...poolName, 'db.client.connection.state': 'idle' };
    const used = { ...poolName, 'db.client.connection.state': 'used' };
    const passed = { ...poolName, 'secure_postgres.tls.assertion.outcome': 'passed' };
    const failed = { ...poolName, 'secure_postgres.tls.assertion.outcome': 'failed' };
    this.observe = (result) => {
      const stats = gauges.stats();
      result.observe(instruments.connectionCount, stats.idle, idle);
      result.observe(instruments.connectionCount, stats.total - stats.idle, used);
      result.observe(instruments.connectionMax, identity.max, poolName);
      result.observe(instruments.pendingRequests, stats.waiting, poolName);
      result.observe(instruments.tlsAssertions, stats.tlsAssertionsPassed, passed);
      result.observe(instruments.tlsAssertions, stats.tlsAssertionsFailed, failed);
      if (this.caches.length > 0) {
        result.observe(instruments.cacheHits, this.caches.reduce((sum, cache) => sum + cache.hits, 0), poolName);
        result.observe(instruments.cacheEvictions, this.caches.reduce((sum, cache) => sum + cache.evictions, 0), poolName);
      }
    };
    meter.addBatchObservableCallback(this.observe, observablesOf(instruments));
  }

  /** A statement cache of a service on this pool: its hits and evictions are reported. */
  watchStatementCache(cache: StatementCacheCounts): void {
    this.caches.push(cache);
  }

  operation(seconds: number, operation: string, errorType?: string, statusCode?: string): void {
    const key = errorType === undefined ? operation : `${operation} ${errorType} ${statusCode ?? ''}`;
    let attributes = this.operationAttributes.get(key);
    if (!attributes) {
      attributes = { ...this.operationBase, 'db.operation.name': operation };
      if (errorType !== undefined) attributes['error.type'] = errorType;
      if (statusCode !== undefined) attributes['db.response.status_code'] = statusCode;
      this.operationAttributes.set(key, attributes);
    }
    this.instruments.operationDuration.record(seconds, attributes);
  }

  connectionCreated(seconds: number): void {
    this.instruments.createTime.record(seconds, this.pool);
  }

  waited(seconds: number): void {
    this.instruments.waitTime.record(seconds, this.pool);
  }

  timedOut(): void {
    this.instruments.timeouts.add(1, this.pool);
  }

  rowCapRefused(): void {
    this.instruments.rowCapRefusals.add(1, this.pool);
  }

  /** The pool closed: its gauges are no longer observed. */
  close(): void {
    this.meter.removeBatchObservableCallback(this.observe, observablesOf(this.instruments));
  }
}

// Where @opentelemetry/api keeps what the app registered (its global-utils.ts): looked at without loading the API.
const GLOBAL_OTEL_API = Symbol.for('opentelemetry.js.api.1');

/**
 * The app's meter provider: the one passed as the `meterProvider` option, else the global one when the
 * app registered one (an OpenTelemetry SDK started before the module). Only in that second case is
 * @opentelemetry/api loaded (dynamically); without either, nothing is loaded and nothing recorded.
 */
export async function appMeterProvider(explicit: unknown): Promise<MeterProvider | undefined> {
  if (explicit !== undefined) return explicit as MeterProvider;
  const registered = (globalThis as Record<symbol, { metrics?: unknown } | undefined>)[GLOBAL_OTEL_API]?.metrics;
  if (registered === undefined) return undefined;
  const api = await import('@opentelemetry/api');
  return api.metrics.getMeterProvider() as unknown as MeterProvider;
}
