import { Logger } from '@nestjs/common';
import pg from 'pg';
import { sendCancelRequest } from './cancel-request.js';
import { observeAuthentication } from '../auth/observe-authentication.js';
import type { HostPort } from '../config/database-url.js';
import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import { ConnectionCredentials } from '../credentials/connection-credentials.js';
import { ShuttingDownError, ConnectTimeoutError, SslNotActiveError } from '../errors/connection.errors.js';
import { SessionUnavailableError } from '../errors/pooler.errors.js';
import type { SecureDatabaseError } from '../errors/secure-database.error.js';
import { isConnectionUnusable, toDatabaseError } from '../errors/to-database-error.js';
import { useCamelCaseRows } from '../config/row-case.js';
import { connectToTarget } from '../failover/connect-to-target.js';
import type { ServerState } from '../failover/target-session-attrs.js';
import { refuseSessionStatement } from '../pooler/session-statements.js';
import { type StatementEnvelope, localTimeoutsSql, sessionTimeoutsSql } from '../pooler/server-settings.js';
import { type CertificateExpiry, certificateExpiryOf } from '../tls/certificate-expiry.js';
import { type ConnectionTlsFacts, assertConnectionTls } from '../tls/tls-assertion.js';
import { TimeoutError, promiseTimeout } from '../utils/promise-timeout.js';
import type { DatabaseObserver } from '../observability/database-observer.js';

// pg-pool destroys a connection still connecting at the acquire timeout; no host is tried this close to it.
const DEADLINE_MARGIN_MS = 10;

// How long after the deadline the destroyed connections may take to be seen gone.
const POOL_END_GRACE_MS = 250;

export interface PipelineStats {
  /** Connections running statements for several callers now. */
  sharedConnections: number;
  /** Statements in flight on them. */
  pipelined: number;
  /** The most statements in flight on one connection now. */
  depth: number;
}

/** The dedicated LISTEN connection of a DatabaseService (listen/), for stats() and health. */
export interface ListenerStats {
  state: 'listening' | 'connecting' | 'reconnecting' | 'closed';
  /** Channels LISTENed to (or to be, once reconnected). */
  channels: number;
  /** Times the connection was lost and opened again. */
  reconnects: number;
}

export interface DatabasePoolStats {
  /** Open connections (idle + in use). */
  total: number;
  idle: number;
  /** Callers queued for a free connection. */
  waiting: number;
  /** Operations holding or waiting for a connection through this pool. */
  inFlight: number;
  /** New physical connections that passed / failed the TLS assertion. */
  tlsAssertionsPassed: number;
  tlsAssertionsFailed: number;
  /** With pipelining on: connections shared by several callers now, statements in flight on them, the deepest. */
  pipeline?: PipelineStats;
  /** Once db.listen() was called: its dedicated connection (not counted in total). */
  listener?: ListenerStats;
}

/**
 * The one pg.Pool of a connection name, plus what pg-pool leaves to its user: the TLS assertion on
 * every new physical connection, error listeners so a connection killed by the server never crashes
 * the process, error mapping, and a drain that loses no in-flight work.
 */
export class DatabasePool {
  readonly pool: pg.Pool;
  /** TLS facts of the most recent new connection (for health and logs). */
  lastTls?: ConnectionTlsFacts;
  /** Where the most recent new connection landed, and what the server said it was. */
  lastServer?: HostPort & ServerState;
  /** The first certificate to expire in the chain the most recent new connection was shown (startup log, health). */
  lastCertificate?: CertificateExpiry;
  /** Behind a transaction pooler, the pool of DATABASE_DIRECT_URL (withConnection's). */
  readonly direct?: DatabasePool;
  /** Behind a transaction pooler: the SET LOCAL timeouts ahead of each statement, in its round trip and its implicit transaction. */
  readonly statementEnvelope?: StatementEnvelope;
  /** What shares this pool's connections among callers (DatabaseService's pipelining), for stats(). */
  private pipeline?: { stats(): PipelineStats };
  /** Query events, slow-query log and metrics of this pool (observability/); undefined when nothing listens. */
  observer?: DatabaseObserver;
  private readonly logger: Logger;
  /** Each new connection's credentials: secret and certificate files read again when they change, password providers (credentials/). */
  private readonly credentials: ConnectionCredentials;
  private warnedPlaintextServerLeg = false;
  private readonly unusable = new WeakSet<pg.ClientBase>();
  private readonly open = new Set<pg.ClientBase>();
  private inFlight = 0;
  private onIdle?: () => void;
  /** performance.now() by which shutdown must be over; set when shutdown begins. */
  private shutdownDeadline?: number;
  private deadlineTimer?: NodeJS.Timeout;
  private closing?: Promise<void>;
  private assertions = { passed: 0, failed: 0 };
  /** The connection class every pooled connection is made of (the TLS assertion, credentials, failover). */
  private readonly Client: new () => pg.Client;
  /** Resources that live beside the pool (the notification listener): closed by close(), before the pool ends. */
  private readonly companions = new Set<{ close(): Promise<void> }>();
  private listenerStats?: () => ListenerStats;

  constructor(readonly config: ResolvedDatabaseConfig) {
    this.logger = new Logger(config.name ? `SecureDatabase:${config.name}` : 'SecureDatabase');
    if (config.direct) this.direct = new DatabasePool(config.direct);
    if (config.pooler.mode === 'transaction') this.statementEnvelope = { before: [localTimeoutsSql(config.serverTimeouts)], after: [] };
    const unusable = this.unusable;
    const credentials = (this.credentials = new ConnectionCredentials(config, this.logger));
    const connect = (client: pg.Client) => {
      const plan = this.connectPlan();
      const connecting = credentials
        .prepare(client)
        .then(() => connectToTarget(client, plan))
        .catch((error: unknown) => {
          throw credentials.explain(error, client);
        });
      const observer = this.observer;
      if (!observer) return connecting;
      const started = performance.now();
      return connecting.then((state) => (observer.connectionCreated(performance.now() - started), state));
    };
    // Each connection gets the full client config and a permanent error listener (an 'error' on a
    // checked-out client with no listener would otherwise crash the process), and connects as libpq
    // does: host by host (each with its own connect timeout, within the pool's acquire timeout) until
    // one passes the TLS assertion and is the kind of server the configuration asks for.
    class SecureClient extends pg.Client {
      constructor() {
        super(credentials.clientConfig());
        // Before connect(): sees how the server authenticates, and enforces channel_binding=require while it does.
        observeAuthentication(this, config);
        this.on('error', () => unusable.add(this));
        if (config.rowCase === 'camel') useCamelCaseRows(this);
      }

      override connect(): Promise<pg.Client>;
      override connect(callback: (error: Error) => void): void;
      override connect(callback?: (error: Error) => void): Promise<pg.Client> | void {
        const connecting = connect(this).then(() => this);
        if (!callback) return connecting;
        connecting.then(() => callback(undefined as unknown as Error), callback);
      }
    }
    this.Client = SecureClient;
    this.pool = new pg.Pool({
      Client: SecureClient,
      max: config.pool.max,
      idleTimeoutMillis: config.pool.idleTimeoutMs,
      maxLifetimeSeconds: config.pool.maxLifetimeSeconds,
      connectionTimeoutMillis: config.timeouts.acquireMs,
    });
    this.pool.on('connect', (client) => this.open.add(client));
    this.pool.on('remove', (client) => this.open.delete(client));
    // An idle connection died (server restart, Neon's idle kill, network): pg-pool already removed it.
    this.pool.on('error', (error) => this.logger.warn(`An idle connection was closed and removed from the pool: ${this.describe(error)}`));
    const credentialsLine = credentials.describe();
    if (credentialsLine) this.logger.log(credentialsLine);
  }

  /** Reports pipelining in stats(); the pool itself knows nothing of it (it only hands connections out). */
  reportPipeline(pipeline: { stats(): PipelineStats }): void {
    this.pipeline = pipeline;
  }

  /** Shutdown has begun (onModuleDestroy): readiness reports it; queries are still served until close(). */
  get shuttingDown(): boolean {
    return this.shutdownDeadline !== undefined;
  }

  /** close() was called: new work is refused. */
  get closed(): boolean {
    return this.closing !== undefined;
  }

  stats(): DatabasePoolStats {
    return {
      total: this.pool.totalCount,
      idle: this.pool.idleCount,
      waiting: this.pool.waitingCount,
      inFlight: this.inFlight,
      tlsAssertionsPassed: this.assertions.passed,
      tlsAssertionsFailed: this.assertions.failed,
      ...(this.pipeline ? { pipeline: this.pipeline.stats() } : {}),
      ...(this.listenerStats ? { listener: this.listenerStats() } : {}),
    };
  }

  /**
   * A connection outside the pool (it never counts against max nor goes back to it), for work that
   * holds one for the app's life (the notification listener), made exactly as pooled ones are:
   * credentials (a rotated password tried again once), host list and target_session_attrs, the TLS
   * assertion. Its owner ends it; close() runs `companion.close()` first, and the shutdown deadline
   * destroys it with the pool's.
   */
  async openDedicatedConnection(): Promise<pg.Client> {
    if (this.closing) throw new ShuttingDownError();
    const open = async () => {
      const client = new this.Client();
      try {
        await client.connect();
      } catch (error) {
        // Its socket may still be open (an assertion that failed): never leave it behind.
        (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
        throw error;
      }
      return client;
    };
    try {
      const client = await open().catch(async (error: unknown) => {
        if (await this.credentials.renewedAfterRejection(error)) return open();
        throw error;
      });
      this.open.add(client);
      client.once('end', () => this.open.delete(client));
      return client;
    } catch (error) {
      throw this.mapError(error);
    }
  }

  /** Registers what close() closes before the pool ends (and what reports in stats() as the listener). */
  addCompanion(companion: { close(): Promise<void> }, listenerStats?: () => ListenerStats): void {
    this.companions.add(companion);
    if (listenerStats) this.listenerStats = listenerStats;
  }

  /** Maps a driver error to the library's typed error with this module's verbosity. */
  mapError(error: unknown): SecureDatabaseError {
    return toDatabaseError(error, { verbose: this.config.verboseErrors });
  }

  /** The SQLSTATE / library code in production; the driver message too in development. */
  describe(error: unknown): string {
    const mapped = this.mapError(error);
    return mapped.sqlstate && !this.config.verboseErrors ? `${mapped.code} (SQLSTATE ${mapped.sqlstate})` : `${mapped.code}: ${mapped.message}`;
  }

  /** Runs `fn` with a connection of its own and always releases it (destroying it if it broke). */
  async withClient<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.acquire();
    try {
      return await fn(client);
    } catch (error) {
      // Ended by the server (57P01: its socket may not have closed yet), or left mid-statement by `fn`:
      // never handed to the next caller.
      this.discardIfBroken(client, error);
      throw error;
    } finally {
      this.release(client);
    }
  }

  /** Prefer withClient(). Every acquire() must be followed by exactly one release(). */
  async acquire(): Promise<pg.PoolClient> {
    if (this.closing) throw new ShuttingDownError();
    this.inFlight++;
    const observer = this.observer;
    const started = observer ? performance.now() : 0;
    try {
      let client: pg.PoolClient;
      try {
        client = await this.pool.connect();
      } catch (refused) {
        // A password refused (28P01) just after a rotation: the secret file is read again, and if it now holds another one, tried once more.
        if (!(await this.credentials.renewedAfterRejection(refused))) throw refused;
        client = await this.pool.connect();
      }
      observer?.acquired(performance.now() - started);
      return client;
    } catch (error) {
      this.settle();
      const mapped = this.mapError(error);
      if (mapped.code === 'DB_POOL_EXHAUSTED') observer?.acquireTimedOut();
      throw mapped;
    }
  }

  release(client: pg.PoolClient): void {
    // A connection still inside a transaction (a raw BEGIN whose COMMIT/ROLLBACK never ran) must not
    // reach the next caller: it would run in, or be blocked by, someone else's transaction.
    const txStatus = (client as { getTransactionStatus?(): string | null }).getTransactionStatus?.();
    const broken = this.unusable.has(client) || (txStatus != null && txStatus !== 'I');
    client.release(broken ? new Error('connection unusable') : undefined);
    this.settle();
  }

  /**
   * Cancels the statement `client` runs (a CancelRequest over TLS, see cancel-request.ts), within the
   * connect timeout. When that fails the connection is marked unusable and its socket destroyed (its
   * statement then fails): a cancel that might still arrive must never hit the next caller. Never rejects.
   */
  async cancelStatement(client: pg.ClientBase): Promise<void> {
    try {
      await sendCancelRequest(client, this.config.timeouts.connectMs);
    } catch (error) {
      this.markUnusable(client);
      (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      this.logger.warn(`A cancel request failed; the connection was discarded: ${error instanceof Error ? error.message : String(error)}`);
    }
  }

  /** The connection will be destroyed instead of reused when released. */
  markUnusable(client: pg.ClientBase): void {
    this.unusable.add(client);
  }

  isUnusable(client: pg.ClientBase): boolean {
    return this.unusable.has(client);
  }

  /**
   * After a failed statement: a broken connection is not reused, nor one whose server refused a write
   * as read-only (25006) unless this is a readOnly connection: a primary demoted by a failover keeps
   * its connections open, and only new connections find the new primary.
   */
  discardIfBroken(client: pg.ClientBase, error: unknown): void {
    if (isConnectionUnusable(error) || (!this.config.topology.readOnly && (error as { code?: unknown })?.code === '25006')) this.markUnusable(client);
  }

  /**
   * Where work that needs a server session of its own runs (withConnection, the LISTEN connection):
   * this pool, or behind a transaction pooler the DATABASE_DIRECT_URL pool; without one, refused with
   * SessionUnavailableError saying `why` and what to set.
   */
  sessionPool(why: string): DatabasePool {
    if (!this.transactionPooled) return this;
    if (this.direct) return this.direct;
    throw new SessionUnavailableError(`${why}: set DATABASE_DIRECT_URL to the database's direct address`);
  }

  /** Behind a transaction pooler: true, and each statement the module sends runs in a transaction of its own. */
  get transactionPooled(): boolean {
    return this.config.pooler.mode === 'transaction';
  }

  /** Refuses, behind a transaction pooler, a statement that would leave state on a shared server connection. */
  guardStatement(text: string): void {
    if (this.transactionPooled) refuseSessionStatement(text);
  }

  /** The BEGIN the module sends for transaction(): behind a transaction pooler, with the SET LOCAL timeouts in the same round trip. */
  beginStatement(begin: string): string {
    return this.transactionPooled ? `${begin}; ${localTimeoutsSql(this.config.serverTimeouts)}` : begin;
  }

  /** Behind a session pooler the timeouts are session settings: DISCARD ALL removed them, so they are set again. */
  async restoreSessionSettings(client: pg.ClientBase): Promise<void> {
    if (this.config.pooler.mode === 'session') await client.query(sessionTimeoutsSql(this.config.serverTimeouts));
  }

  private connectPlan() {
    const { target, topology, timeouts } = this.config;
    return {
      hosts: target.hosts,
      ...topology,
      connectMs: timeouts.connectMs,
      deadline: performance.now() + timeouts.acquireMs - DEADLINE_MARGIN_MS,
      check: (client: pg.Client) => this.verifyNewConnection(client),
    };
  }

  private settle(): void {
    this.inFlight--;
    if (this.inFlight === 0) this.onIdle?.();
  }

  private async verifyNewConnection(client: pg.Client): Promise<ServerState> {
    const { tls, pooler } = this.config;
    const pooled = pooler.mode !== 'none';
    try {
      // The connect timeout was spent on TCP/TLS/auth; the assertion gets a budget of its own of the same size.
      const asserted = await promiseTimeout(
        this.config.timeouts.connectMs,
        assertConnectionTls(client, tls, { pooled, requireServerLegTls: tls.minMode === 'verify-full' }),
        () => (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy(),
      );
      this.assertions.passed++;
      this.lastTls = asserted.tls;
      this.lastCertificate = certificateExpiryOf(client);
      this.lastServer = { host: client.host, port: client.port, ...asserted.server };
      if (pooled && tls.encrypted && !asserted.tls.ssl && !this.warnedPlaintextServerLeg) {
        this.warnedPlaintextServerLeg = true;
        this.logger.warn(
          "The pooler connects to the server in plaintext (pg_stat_ssl, which describes the pooler-to-server leg, says ssl = false): that leg can be read and changed on its network. Turn on the pooler's server TLS (PgBouncer: server_tls_sslmode = verify-full), or set DATABASE_SSL_MIN_MODE=verify-full to refuse such a pooler",
        );
      }
      await this.restoreSessionSettings(client);
      return asserted.server;
    } catch (error) {
      this.assertions.failed++;
      if (error instanceof TimeoutError) throw new ConnectTimeoutError('the TLS assertion query got no answer within the connect timeout', { cause: error });
      if (error instanceof SslNotActiveError) this.logger.error(error.message);
      throw error;
    }
  }

  /**
   * Starts the shutdown clock: one `shutdownTimeoutMs` budget covers everything from here (the HTTP
   * server finishing its requests, then close()), so it is not spent twice. At the deadline the
   * connections still busy are closed hard, which also frees HTTP requests stuck on the database.
   * Idempotent.
   */
  beginShutdown(): void {
    if (this.shutdownDeadline !== undefined) return;
    this.direct?.beginShutdown();
    const { shutdownMs } = this.config.timeouts;
    this.shutdownDeadline = performance.now() + shutdownMs;
    this.deadlineTimer = setTimeout(() => this.closeAllConnections(), shutdownMs).unref();
  }

  /**
   * Drains: new acquires fail with ShuttingDownError, operations in flight (and those already
   * queued for a connection) finish, then the pool ends, all by the shutdown deadline (counted from
   * beginShutdown(), or from now). Idempotent.
   */
  close(): Promise<void> {
    this.beginShutdown();
    this.closing ??= Promise.all([...[...this.companions].map((companion) => companion.close()), this.drain(), this.direct?.close()]).then(() => undefined);
    return this.closing;
  }

  private async drain(): Promise<void> {
    const remainingMs = () => Math.max(0, this.shutdownDeadline! - performance.now()) + POOL_END_GRACE_MS;
    const idle = new Promise<void>((resolve) => {
      this.onIdle = resolve;
      if (this.inFlight === 0) resolve();
    });
    await promiseTimeout(remainingMs(), idle).catch(() => undefined);
    clearTimeout(this.deadlineTimer);
    await promiseTimeout(remainingMs(), this.pool.end()).catch(() =>
      this.logger.warn('The pool did not end in time: a connection taken from the raw Pool was never released'),
    );
    this.observer?.close();
  }

  private closeAllConnections(): void {
    if (this.inFlight > 0) this.logger.warn(`${this.inFlight} database operation(s) still running at the shutdown deadline: closing their connections`);
    for (const client of this.open) (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  }
}
