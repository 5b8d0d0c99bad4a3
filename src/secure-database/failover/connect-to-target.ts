import pg from 'pg';
import type { HostPort } from '../config/database-url.js';
import { ServerRoleMismatchError } from '../errors/connection.errors.js';
import { toDatabaseError } from '../errors/to-database-error.js';
import { type LoadBalanceHosts, type ServerState, type TargetSessionAttrs, describeTarget, meetsTarget, passesFor } from './target-session-attrs.js';

/** How a new physical connection finds its server: libpq's multi-host rules. */
export interface ConnectPlan {
  hosts: HostPort[];
  loadBalanceHosts: LoadBalanceHosts;
  targetSessionAttrs: TargetSessionAttrs;
  /** A replica connection: the server must also be in recovery, or the session read-only. */
  readOnly: boolean;
  /** Per host, as libpq's connect_timeout: TCP, TLS and authentication. */
  connectMs: number;
  /** performance.now() after which no further host is tried (the pool gives up on the acquire then). */
  deadline: number;
  /** Runs on every established connection before it is judged: the TLS assertion, which also reads the server's state. */
  check(client: pg.Client): Promise<ServerState>;
}

/** The parts of pg 8.23's Client (lib/client.js) that connecting again on the same object touches. */
interface PgClientInternals {
  connection: pg.Connection & { stream: { destroy(): void } };
  connectionParameters: { host: string; port: number; ssl: unknown; sslnegotiation?: string; client_encoding?: string };
  host: string;
  port: number;
  connectionTimeoutHandle?: NodeJS.Timeout;
  _connectionTimeoutMillis: number;
}

// The fields pg's Client sets up in its constructor and changes while connecting.
const FRESH_STATE = {
  _connecting: false,
  _connected: false,
  _connectionError: false,
  _connectionCallback: null,
  _ending: false,
  _ended: false,
  _queryable: true,
  _activeQuery: null,
  _txStatus: null,
  readyForQuery: false,
  hasExecuted: false,
  processID: null,
  secretKey: null,
  saslSession: null,
};

/** Kind of failure, for choosing which error a connection that reached no host reports. */
type Outcome = { kind: 'security' | 'unreachable'; error: unknown } | { kind: 'wrong-role' };

const SECURITY_CODES = new Set(['DB_SSL_NOT_ACTIVE', 'DB_TLS_VERIFICATION_FAILED', 'DB_AUTHENTICATION_FAILED']);

/**
 * Connects `client` as libpq connects a multi-host URL: the hosts in order (shuffled for each
 * connection under load_balance_hosts=random), each with its own connect timeout and its own
 * certificate check (pg verifies against the host it dials), and a connection that reaches a server
 * of the wrong kind for target_session_attrs (or, for a readOnly connection, a writable primary) is
 * closed and the next host tried. `prefer-standby` makes a second pass accepting any server. pg's
 * Client cannot connect twice, so between attempts it is given a fresh protocol connection and the
 * state its constructor set up (pg is pinned to 8.23 for this; the failover specs cover it).
 * Resolves with the host reached; rejects with the most telling failure: a TLS or authentication
 * failure first (never hidden behind "no suitable host"), then ServerRoleMismatchError, then the first
 * host's error.
 */
export async function connectToTarget(client: pg.Client, plan: ConnectPlan): Promise<HostPort> {
  try {
    return await tryHosts(client, plan);
  } catch (error) {
    close(client); // pg-pool drops a client that failed to connect without closing it
    throw error;
  }
}

async function tryHosts(client: pg.Client, plan: ConnectPlan): Promise<HostPort> {
  const outcomes: Outcome[] = [];
  let attempts = 0;
  for (const target of passesFor(plan.targetSessionAttrs)) {
    for (const server of ordered(plan.hosts, plan.loadBalanceHosts)) {
      if (attempts > 0 && performance.now() >= plan.deadline) return fail(outcomes, plan);
      if (attempts++ > 0) prepareForNextHost(client);
      dial(client, server, Math.max(1, Math.min(plan.connectMs, plan.deadline - performance.now())));
      let state: ServerState;
      try {
        await (pg.Client.prototype.connect as (this: pg.Client) => Promise<pg.Client>).call(client);
        state = await plan.check(client);
      } catch (error) {
        outcomes.push({ kind: SECURITY_CODES.has(toDatabaseError(error, { verbose: false }).code) ? 'security' : 'unreachable', error });
        continue;
      }
      if (meetsTarget(target, state) && (!plan.readOnly || state.inRecovery || state.readOnly)) return server;
      outcomes.push({ kind: 'wrong-role' });
    }
  }
  return fail(outcomes, plan);
}

function fail(outcomes: Outcome[], plan: ConnectPlan): never {
  const security = outcomes.find((o) => o.kind === 'security');
  if (security && 'error' in security) throw security.error;
  const wrongRole = outcomes.filter((o) => o.kind === 'wrong-role').length;
  if (wrongRole > 0) {
    const wanted = plan.readOnly && plan.targetSessionAttrs === 'any' ? 'a standby or a read-only session (readOnly connection)' : describeTarget(plan.targetSessionAttrs);
    const unreachable = outcomes.length - wrongRole;
    throw new ServerRoleMismatchError(
      `no server in DATABASE_URL is ${wanted}: ${wrongRole} reached but of another kind` + (unreachable ? `, ${unreachable} not reachable` : ''),
    );
  }
  const first = outcomes[0];
  throw first && 'error' in first ? first.error : new Error('no host to connect to');
}

function ordered(hosts: HostPort[], loadBalance: LoadBalanceHosts): HostPort[] {
  if (loadBalance !== 'random') return hosts;
  const shuffled = [...hosts];
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j], shuffled[i]];
  }
  return shuffled;
}

function dial(client: pg.Client, server: HostPort, timeoutMs: number): void {
  const c = client as unknown as PgClientInternals;
  c.host = c.connectionParameters.host = server.host;
  c.port = c.connectionParameters.port = server.port;
  c._connectionTimeoutMillis = timeoutMs;
}

/** Ends the current attempt: Terminate when it got as far as a session, else the socket is dropped. */
function close(client: pg.Client): PgClientInternals['connection'] {
  const c = client as unknown as PgClientInternals & { _connected: boolean };
  const connection = c.connection;
  // Events still on their way from this socket (its close, a late error) must not reach the client.
  connection.removeAllListeners();
  connection.on('error', () => undefined);
  if (c._connected) connection.end();
  else connection.stream.destroy();
  return connection;
}

/** Closes the last attempt's socket and gives the client what its constructor gave it, for the next host. */
function prepareForNextHost(client: pg.Client): void {
  const c = client as unknown as PgClientInternals;
  const previous = close(client);
  clearTimeout(c.connectionTimeoutHandle);
  Object.assign(c, FRESH_STATE, { _queryQueue: [], _sentQueryQueue: [] });
  const old = previous as unknown as { _keepAlive?: boolean; _keepAliveInitialDelayMillis?: number; ssl: unknown; sslNegotiation?: string };
  c.connection = new pg.Connection({
    ssl: old.ssl,
    sslNegotiation: old.sslNegotiation,
    keepAlive: old._keepAlive,
    keepAliveInitialDelayMillis: old._keepAliveInitialDelayMillis,
    encoding: c.connectionParameters.client_encoding || 'utf8',
  } as ConstructorParameters<typeof pg.Connection>[0]) as PgClientInternals['connection'];
}
