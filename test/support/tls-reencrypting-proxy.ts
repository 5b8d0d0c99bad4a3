import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { type AddressInfo, type Socket, connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { TLSSocket, connect as tlsConnect } from 'node:tls';
import { issueServerCertificate } from '../../src/local-postgres/tls-certificates.js';
import { SSL_REQUEST } from './switchable-forwarder.js';

/**
 * A man in the middle holding a certificate from the CA the client trusts (for localhost and
 * 127.0.0.1): it answers PostgreSQL's SSLRequest, terminates the client's TLS with its own
 * certificate, and opens a TLS connection of its own to the server (SSLRequest, then a verified
 * handshake), forwarding the decrypted stream between the two. Both legs are TLS, so pg_stat_ssl says
 * ssl = true and the client's certificate check passes: only SCRAM channel binding
 * (tls-server-end-point: the hash of the certificate the client saw) can tell. Test support only.
 */
export async function startTlsReencryptingProxy(caPath: string, upstreamPort: number) {
  const dir = await mkdtemp(join(tmpdir(), 'tls-mitm-'));
  const ca = { certPath: caPath, keyPath: join(dirname(caPath), 'local-postgres-ca.key') };
  const cert = await issueServerCertificate(ca, dir, ['localhost', '127.0.0.1']);
  const [key, certificate, caPem] = await Promise.all([readFile(cert.keyPath), readFile(cert.certPath), readFile(caPath)]);
  const sockets = new Set<Socket>();
  let sessions = 0;
  const server = createServer((raw) => {
    sockets.add(raw);
    raw.on('error', () => undefined);
    raw.once('data', () => {
      raw.write('S');
      const client = new TLSSocket(raw, { isServer: true, key, cert: certificate });
      const upstreamRaw = connect(upstreamPort, '127.0.0.1');
      sockets.add(upstreamRaw);
      const fail = () => {
        client.destroy();
        upstreamRaw.destroy();
      };
      for (const s of [client, upstreamRaw]) s.on('error', fail);
      upstreamRaw.write(SSL_REQUEST);
      upstreamRaw.once('data', (answer: Buffer) => {
        if (answer.toString() !== 'S') return fail();
        const upstream = tlsConnect({ socket: upstreamRaw, ca: caPem, servername: 'localhost' }, () => {
          sessions++;
          client.pipe(upstream).pipe(client);
        });
        upstream.on('error', fail);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    /** Connections for which both TLS legs were established. */
    get sessions() {
      return sessions;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
