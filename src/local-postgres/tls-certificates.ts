import { execFile } from 'node:child_process';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { writeFile } from 'node:fs/promises';

const run = promisify(execFile);

export interface CertificateAuthority {
  certPath: string;
  keyPath: string;
}

export interface ServerCertificate {
  certPath: string;
  keyPath: string;
}

// P-256 keys: generated in milliseconds, accepted by every PostgreSQL and Node TLS stack we target.
const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

// A year: long enough that no check on the throwaway clusters sees a certificate about to expire.
const DEFAULT_DAYS = 365;

export async function createCertificateAuthority(dir: string, name: string, days = DEFAULT_DAYS): Promise<CertificateAuthority> {
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  await run('openssl', [
    'req', '-x509', ...EC_KEY, '-days', String(days), '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-keyout', keyPath, '-out', certPath,
  ]);
  return { certPath, keyPath };
}

/** A server certificate for `hosts` (DNS names or IP addresses, all as subjectAltName), signed by `ca`, valid for `days`. */
export async function issueServerCertificate(
  ca: CertificateAuthority,
  dir: string,
  hosts: string[],
  days = DEFAULT_DAYS,
): Promise<ServerCertificate> {
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  const csrPath = join(dir, 'server.csr');
  const extPath = join(dir, 'server.ext');
  const san = hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  await writeFile(
    extPath,
    `subjectAltName=${san}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n`,
  );
  await run('openssl', ['req', '-new', ...EC_KEY, '-subj', `/CN=${hosts[0]}`, '-keyout', keyPath, '-out', csrPath]);
  await run('openssl', [
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-CAcreateserial',
    '-days', String(days), '-extfile', extPath, '-out', certPath,
  ]);
  return { certPath, keyPath };
}
