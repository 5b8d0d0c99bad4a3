import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { rename, writeFile } from 'node:fs/promises';

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
  // A random serial: clusters started in parallel never race on the CA's serial file (-CAcreateserial).
  await run('openssl', [
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', `0x${randomBytes(15).toString('hex')}`,
    '-days', String(days), '-extfile', extPath, '-out', certPath,
  ]);
  return { certPath, keyPath };
}

/**
 * A client certificate for `commonName` (the database user, for pg_hba `cert` and `clientcert=verify-full`),
 * signed by `ca`, as `<name>.crt` and `<name>.key` in `dir`. With `passphrase` the key is encrypted
 * (PKCS#8, AES-256); the passphrase reaches openssl through its environment, not its command line.
 */
export async function issueClientCertificate(
  ca: CertificateAuthority,
  dir: string,
  commonName: string,
  options: { name?: string; passphrase?: string; days?: number } = {},
): Promise<ServerCertificate> {
  const name = options.name ?? `client-${commonName}`;
  const certPath = join(dir, `${name}.crt`);
  const keyPath = join(dir, `${name}.key`);
  const csrPath = join(dir, `${name}.csr`);
  const extPath = join(dir, `${name}.ext`);
  await writeFile(extPath, 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  await run('openssl', ['req', '-new', ...EC_KEY, '-subj', `/CN=${commonName}`, '-keyout', keyPath, '-out', csrPath]);
  // A random serial of its own: issuing in parallel never races on the CA's serial file.
  const serial = `0x${randomBytes(15).toString('hex')}`;
  await run('openssl', [
    'x509', '-req', '-in', csrPath, '-CA', ca.certPath, '-CAkey', ca.keyPath, '-set_serial', serial,
    '-days', String(options.days ?? DEFAULT_DAYS), '-extfile', extPath, '-out', certPath,
  ]);
  if (options.passphrase !== undefined) {
    await run('openssl', ['pkcs8', '-topk8', '-v2', 'aes-256-cbc', '-in', keyPath, '-out', `${keyPath}.encrypted`, '-passout', 'env:CLIENT_KEY_PASSPHRASE'], {
      env: { ...process.env, CLIENT_KEY_PASSPHRASE: options.passphrase },
    });
    await rename(`${keyPath}.encrypted`, keyPath);
  }
  return { certPath, keyPath };
}
