import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';

/**
 * A plain TCP forwarder on 127.0.0.1 whose upstream port can be changed at any time: connections
 * already open keep the upstream they were opened to, each new one goes to the current `target`.
 * Lets a spec start an app against one server and give its later physical connections another
 * (a TLS terminator, a server of another kind). Also keeps the first chunk each client sent, which
 * tells an SSLRequest (00 00 00 08 04 d2 16 2f) from a TLS ClientHello sent directly (16 03 …).
 * Test support only.
 */
export class SwitchableForwarder {
  /** The first chunk each accepted connection sent, in accept order. */
  readonly firstChunks: Buffer[] = [];
  private acceptedCount = 0;
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    public target: number,
  ) {}

  static async start(target: number): Promise<SwitchableForwarder> {
    let forwarder: SwitchableForwarder | undefined;
    const server = createServer((socket) => forwarder!.accept(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    forwarder = new SwitchableForwarder(server, target);
    return forwarder;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** TCP connections accepted since start. */
  get accepted(): number {
    return this.acceptedCount;
  }

  /** Destroys every open connection and stops listening. */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(client: Socket): void {
    const index = this.acceptedCount++;
    const upstream = connect(this.target, '127.0.0.1');
    for (const s of [client, upstream]) {
      this.sockets.add(s);
      s.setNoDelay(true);
      s.on('error', () => undefined);
      s.on('close', () => {
        this.sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.once('data', (chunk: Buffer) => (this.firstChunks[index] = Buffer.from(chunk)));
    client.pipe(upstream);
    upstream.pipe(client);
  }
}

/** PostgreSQL's SSLRequest: length 8, code 80877103. */
export const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
