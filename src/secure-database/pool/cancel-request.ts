import pg from 'pg';

/** The parts of pg 8.23's Client and Connection a cancel request is built from. */
interface CancellableClient {
  host: string;
  port: number;
  processID: number | null;
  secretKey: number | null;
  connection: { ssl: unknown; sslNegotiation?: string; _keepAlive?: boolean };
}

type RawConnection = NodeJS.EventEmitter & {
  connect(port: number | string, host?: string): void;
  requestSsl(): void;
  cancel(processID: number, secretKey: number): void;
  stream: { destroy(): void; end(): void };
};

/**
 * Asks the server to cancel whatever `client`'s backend is running: a CancelRequest on a new
 * connection to the host and port `client` reached, under the same TLS configuration as `client`
 * itself (its `ssl` options, certificate verification included, and its sslnegotiation). pg's own
 * Client.cancel sends the request in plaintext right after TCP connect, exposing the backend's secret
 * key (with which anyone on the path could cancel its statements later): never used.
 *
 * With TLS: SSLRequest (or, under sslnegotiation=direct, the TLS handshake at once), then the
 * CancelRequest inside TLS. Resolves when the server has closed the cancel connection: it has then
 * delivered the cancel to the backend, or dropped it (a statement already over is not affected).
 * Rejects on any failure, and after `timeoutMs` (the connect timeout), the connection destroyed.
 */
export function sendCancelRequest(client: pg.ClientBase, timeoutMs: number): Promise<void> {
  const c = client as unknown as CancellableClient;
  const { processID, secretKey } = c;
  if (processID === null || secretKey === null) return Promise.reject(new Error('the connection has no cancel key'));
  const ssl = c.connection.ssl;
  const direct = c.connection.sslNegotiation === 'direct';
  const con = new pg.Connection({ ssl, sslNegotiation: c.connection.sslNegotiation } as ConstructorParameters<typeof pg.Connection>[0]) as unknown as RawConnection;
  return new Promise<void>((resolve, reject) => {
    let sent = false;
    let secured = false;
    const timer = setTimeout(() => fail(new Error(`no answer to the cancel request within ${timeoutMs} ms`)), timeoutMs);
    const done = () => {
      clearTimeout(timer);
      con.removeAllListeners();
      con.on('error', () => undefined);
    };
    const fail = (error: Error) => {
      done();
      con.stream.destroy();
      reject(error);
    };
    const send = () => {
      sent = true;
      con.cancel(processID, secretKey);
    };
    // After the request went out the server may reset the connection instead of closing it cleanly.
    con.on('error', (error: Error) => (sent ? close() : fail(error)));
    // The server closes the connection once it has handled the request.
    const close = () => {
      done();
      if (sent && (secured || !ssl)) resolve();
      else reject(new Error('the server closed the cancel connection before the request was sent'));
    };
    con.on('end', close);
    if (ssl) {
      // pg emits sslconnect as the handshake starts: the request is written only once it succeeded
      // (certificate verified), so a failed verification is a failure, not a cancel sent.
      con.once('sslconnect', () =>
        (con.stream as unknown as NodeJS.EventEmitter).once('secureConnect', () => {
          secured = true;
          send();
        }),
      );
      if (!direct) con.once('connect', () => con.requestSsl());
    } else {
      con.once('connect', send);
    }
    if (c.host?.startsWith('/')) con.connect(`${c.host}/.s.PGSQL.${c.port}`);
    else con.connect(c.port, c.host);
  });
}
