import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TLSSocket } from 'node:tls';
import { issueServerCertificate } from '../../src/local-postgres/tls-certificates.js';

/**
 * Answers PostgreSQL's SSLRequest, terminates TLS with a certificate the client trusts, and forwards
 * the decrypted stream to `upstreamPort` in plaintext: the client socket is verified TLS while the
 * server sees a plaintext connection. Only the server-side half of the TLS assertion can catch it.
 */
export async function startTlsTerminatingProxy(caPath: string, upstreamPort: number) {
  const dir = await mkdtemp(join(tmpdir(), 'tls-proxy-'));
  const ca = { certPath: caPath, keyPath: join(dirname(caPath), 'local-postgres-ca.key') };
  const cert = await issueServerCertificate(ca, dir, ['localhost', '127.0.0.1']);
  const [key, certificate] = await Promise.all([readFile(cert.keyPath), readFile(cert.certPath)]);
  const sockets = new Set<Socket>();
  const server = createServer((raw) => {
    sockets.add(raw);
    raw.on('error', () => undefined);
    raw.once('data', () => {
      raw.write('S');
      const secure = new TLSSocket(raw, { isServer: true, key, cert: certificate });
      const upstream = connect(upstreamPort, '127.0.0.1');
      sockets.add(upstream);
      for (const s of [secure, upstream]) s.on('error', () => { secure.destroy(); upstream.destroy(); });
      secure.pipe(upstream).pipe(secure);
    });
  });
  const listening = await listenOnLoopback(server, sockets);
  return {
    port: listening.port,
    async close() {
      await listening.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Accepts TCP connections and never answers: a blackholed database. */
export async function startSilentListener() {
  const sockets = new Set<Socket>();
  const server = createServer((s) => { sockets.add(s); s.on('error', () => undefined); });
  return listenOnLoopback(server, sockets);
}

async function listenOnLoopback(server: Server, sockets: Set<Socket>) {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}
