import { type Server, type Socket, createConnection, createServer } from 'node:net';
import { performance } from 'node:perf_hooks';
import { LocalPostgresCluster } from '../../src/local-postgres/index.js';

/**
 * What the proxy does with traffic. Every mode applies to new and to already-open connections,
 * except `refuse`, which only closes the listening socket (open connections keep forwarding).
 */
export type FaultMode =
  | { kind: 'pass' }
  /** Each chunk, and each close, is held `ms` after it arrived, in both directions, in order. */
  | { kind: 'latency'; ms: number }
  /** Connects are accepted; nothing (data, FIN, RST) is forwarded either way; held traffic flows again on the next forwarding mode. */
  | { kind: 'blackhole' }
  /** Nothing listens: connects get ECONNREFUSED. */
  | { kind: 'refuse' }
  /** Each direction of each connection forwards its first `bytes` (counted from the connection's start), then holds. */
  | { kind: 'stall'; bytes: number };

export interface ProxyTarget {
  host: string;
  port: number;
}

const LOOPBACK = '127.0.0.1';
/** Per direction: past this many queued bytes the sending socket is paused, so a held connection costs bounded memory. */
const QUEUE_HIGH_WATER = 1 << 20;

type Direction = 'toServer' | 'toClient';

interface ConnectionHooks {
  mode(): FaultMode;
  forwarded(direction: Direction, bytes: number): void;
  finished(connection: ProxiedConnection): void;
}

type Held = { chunk: Buffer; receivedAt: number } | { close: 'end' | 'reset'; receivedAt: number };

/** Closes a socket abruptly (RST once connected), the way a dropped network path looks to a peer. */
function abort(socket: Socket | undefined): void {
  if (!socket || socket.destroyed) return;
  if (socket.connecting) socket.destroy();
  else socket.resetAndDestroy();
}

/** One direction of one proxied connection: a FIFO of what arrived, released according to the proxy's mode. */
class Lane {
  private readonly queue: Held[] = [];
  private queuedBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private waitingForDrain = false;
  private forwarded = 0;
  private source: Socket | undefined;

  constructor(
    private readonly mode: () => FaultMode,
    /** The socket to write to; `open: false` asks without opening one. */
    private readonly destination: (open: boolean) => Socket | undefined,
    private readonly countForwarded: (bytes: number) => void,
  ) {}

  attach(source: Socket): void {
    this.source = source;
    source.on('data', (chunk: Buffer) => {
      this.queue.push({ chunk, receivedAt: performance.now() });
      this.queuedBytes += chunk.length;
      if (this.queuedBytes > QUEUE_HIGH_WATER) source.pause();
      this.pump();
    });
    source.on('end', () => this.hold('end'));
  }

  hold(close: 'end' | 'reset'): void {
    this.queue.push({ close, receivedAt: performance.now() });
    this.pump();
  }

  pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    while (this.queue.length > 0 && !this.waitingForDrain) {
      const mode = this.mode();
      if (mode.kind === 'blackhole') return;
      const head = this.queue[0];
      if (mode.kind === 'latency') {
        const wait = head.receivedAt + mode.ms - performance.now();
        if (wait > 0) {
          // A timer may fire up to a millisecond early by performance.now(); pump() then waits again.
          this.timer = setTimeout(() => this.pump(), Math.max(1, Math.ceil(wait)));
          return;
        }
      }
      const allowance = mode.kind === 'stall' ? mode.bytes - this.forwarded : Infinity;
      if (allowance <= 0) return;
      const destination = this.destination(!('close' in head));
      if (destination?.destroyed) {
        this.queue.length = 0;
        return;
      }
      if ('close' in head) {
        this.queue.shift();
        if (head.close === 'end') destination?.end();
        else abort(destination);
        continue;
      }
      if (!destination) throw new Error('unreachable: a data lane always has a destination');
      let chunk = head.chunk;
      if (chunk.length > allowance) {
        head.chunk = chunk.subarray(allowance);
        chunk = chunk.subarray(0, allowance);
      } else {
        this.queue.shift();
      }
      this.queuedBytes -= chunk.length;
      this.forwarded += chunk.length;
      this.countForwarded(chunk.length);
      if (this.source?.isPaused() && this.queuedBytes <= QUEUE_HIGH_WATER) this.source.resume();
      if (!destination.write(chunk)) {
        this.waitingForDrain = true;
        destination.once('drain', () => {
          this.waitingForDrain = false;
          this.pump();
        });
      }
    }
  }

  stop(): void {
    clearTimeout(this.timer);
    this.queue.length = 0;
  }
}

/** A client socket and its upstream socket, which is only opened when the first byte is forwarded. */
class ProxiedConnection {
  private upstream: Socket | undefined;
  private readonly toServer: Lane;
  private readonly toClient: Lane;
  private finished = false;

  constructor(
    private readonly client: Socket,
    private readonly target: ProxyTarget,
    private readonly hooks: ConnectionHooks,
  ) {
    client.setNoDelay(true);
    this.toServer = new Lane(hooks.mode, (open) => (open ? this.openUpstream() : this.upstream), (n) => hooks.forwarded('toServer', n));
    this.toClient = new Lane(hooks.mode, () => client, (n) => hooks.forwarded('toClient', n));
    this.toServer.attach(client);
    this.watch(client, this.toServer);
  }

  private watch(socket: Socket, lane: Lane): void {
    socket.on('error', () => undefined); // surfaced to the other side as a reset, below
    socket.on('close', (hadError) => {
      if (hadError) lane.hold('reset');
      this.finishIfDone();
    });
  }

  private openUpstream(): Socket {
    if (this.upstream) return this.upstream;
    const upstream = createConnection({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    this.upstream = upstream;
    this.toClient.attach(upstream);
    this.watch(upstream, this.toClient);
    return upstream;
  }

  /** Done when neither socket is open (an upstream that was never opened counts as closed). */
  private finishIfDone(): void {
    if (this.client.destroyed && (!this.upstream || this.upstream.destroyed)) this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    this.toServer.stop();
    this.toClient.stop();
    this.hooks.finished(this);
  }

  pump(): void {
    this.toServer.pump();
    this.toClient.pump();
  }

  drop(): void {
    abort(this.client);
    abort(this.upstream);
    this.finish();
  }
}

/**
 * A TCP proxy on 127.0.0.1 in front of a loopback PostgreSQL server, whose faults can be switched at
 * runtime. Connect the application to `port` instead of the server's. Test support only.
 */
export class TcpFaultProxy {
  readonly host = LOOPBACK;
  private currentMode: FaultMode = { kind: 'pass' };
  private acceptedCount = 0;
  private readonly forwardedBytes: Record<Direction, number> = { toServer: 0, toClient: 0 };
  private listeningPort = 0;
  private server: Server | undefined;
  private readonly connections = new Set<ProxiedConnection>();
  private readonly hooks: ConnectionHooks = {
    mode: () => this.currentMode,
    forwarded: (direction, bytes) => (this.forwardedBytes[direction] += bytes),
    finished: (connection) => this.connections.delete(connection),
  };
  private closed = false;

  private constructor(private readonly target: ProxyTarget) {}

  /** Starts a proxy on a free loopback port. The target must be 127.0.0.1: the proxy never sends traffic elsewhere. */
  static async start(target: ProxyTarget): Promise<TcpFaultProxy> {
    if (target.host !== LOOPBACK) throw new Error(`TcpFaultProxy only forwards to ${LOOPBACK}, not ${target.host}`);
    const proxy = new TcpFaultProxy({ host: LOOPBACK, port: target.port });
    await proxy.listen();
    return proxy;
  }

  /** The loopback port to connect to instead of the server's; the same for the proxy's whole life. */
  get port(): number {
    return this.listeningPort;
  }

  get mode(): FaultMode {
    return this.currentMode;
  }

  /** TCP connections accepted since start. */
  get accepted(): number {
    return this.acceptedCount;
  }

  /** Bytes forwarded since start, per direction. */
  get forwarded(): Readonly<Record<Direction, number>> {
    return { ...this.forwardedBytes };
  }

  /** Proxied connections with at least one socket still open (a blackholed close keeps its connection here). */
  get open(): number {
    return this.connections.size;
  }

  pass(): Promise<void> {
    return this.setMode({ kind: 'pass' });
  }

  latency(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError('latency must be >= 0 ms');
    return this.setMode({ kind: 'latency', ms });
  }

  blackhole(): Promise<void> {
    return this.setMode({ kind: 'blackhole' });
  }

  /** Closes the listening socket; leaving this mode listens again on the same port. */
  refuse(): Promise<void> {
    return this.setMode({ kind: 'refuse' });
  }

  /**
   * Forwards the first `bytes` of each direction of each connection, then holds. With TLS to PostgreSQL,
   * 8 lets the SSLRequest and the server's 'S' through and stalls the TLS handshake itself.
   */
  stallAfterBytes(bytes: number): Promise<void> {
    if (!(bytes >= 0)) throw new RangeError('bytes must be >= 0');
    return this.setMode({ kind: 'stall', bytes });
  }

  async setMode(mode: FaultMode): Promise<void> {
    if (this.closed) throw new Error('TcpFaultProxy is closed');
    this.currentMode = mode;
    if (mode.kind === 'refuse') await this.stopListening();
    else await this.listen();
    for (const connection of this.connections) connection.pump();
  }

  /** Resets both sides of every open connection now; returns how many. New connections are handled per mode. */
  dropAll(): number {
    const connections = [...this.connections];
    for (const connection of connections) connection.drop();
    return connections.length;
  }

  /** Drops every connection and stops listening. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    this.dropAll();
    await this.stopListening();
  }

  private async listen(): Promise<void> {
    if (this.server) return;
    const server = createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: LOOPBACK, port: this.listeningPort }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.listeningPort = (server.address() as { port: number }).port;
    this.server = server;
  }

  private async stopListening(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    // Connections are owned by this class, not the server: do not wait for them to end.
    await new Promise<void>((resolve) => {
      server.close();
      setImmediate(resolve);
    });
  }

  private accept(socket: Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.acceptedCount += 1;
    this.connections.add(new ProxiedConnection(socket, this.target, this.hooks));
  }
}

/** A handle on `cluster` whose url() and clients go through `proxy`; administer the cluster through the original. */
export function throughProxy(cluster: LocalPostgresCluster, proxy: TcpFaultProxy): LocalPostgresCluster {
  return new LocalPostgresCluster({ ...cluster.facts, host: proxy.host, port: proxy.port });
}
