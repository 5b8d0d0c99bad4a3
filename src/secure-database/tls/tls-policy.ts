import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import { ClientCertificate } from '../credentials/client-certificate.js';
import type { AppEnv, MinimumSslMode, SslMode } from '../interfaces/secure-database-options.interface.js';

/** How connections are protected, decided once at startup; the runtime assertion enforces it per connection. */
export interface TlsPolicy {
  /** sslmode as configured (URL), or verify-full when none was given. */
  requestedMode: SslMode;
  /** What is enforced, with libpq's meaning: `disable` only under the development opt-in. */
  mode: 'disable' | 'require' | 'verify-ca' | 'verify-full';
  encrypted: boolean;
  verifiesChain: boolean;
  verifiesHostname: boolean;
  /** Where trusted CAs come from. */
  caSource: 'DATABASE_SSL_ROOT_CERT' | 'sslrootcert' | 'node-default' | 'none';
  /** DATABASE_SSL_MIN_MODE: under verify-full a pooler's plaintext connection to the server is refused too. */
  minMode: MinimumSslMode;
  /** For pg's `ssl` option. */
  ssl: false | ConnectionOptions;
  /** The CA given as a path: read again for new connections when it changes (credentials/). */
  caFile?: { path: string; label: string };
  /** The client certificate for mutual TLS, when one is configured (its files read again when they change). */
  clientCertificate?: ClientCertificate;
  warnings: string[];
}

export interface TlsPolicyInput {
  sslmode?: string;
  /** sslrootcert URL parameter: a path, or `system`. */
  sslrootcert?: string;
  sslcert?: string;
  sslkey?: string;
  /** DATABASE_SSL_CERT / DATABASE_SSL_KEY (PEM text or a path): win over sslcert / sslkey. */
  sslCert?: string;
  sslKey?: string;
  sslKeyPassphrase?: string;
  /** DATABASE_SSL_ROOT_CERT: PEM text or a path. */
  sslRootCert?: string;
  sslMinMode: MinimumSslMode;
  allowPlaintext: boolean;
  appEnv: AppEnv;
  env: NodeJS.ProcessEnv;
}

const SSL_MODES: SslMode[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const STRENGTH = { disable: 0, require: 1, 'verify-ca': 2, 'verify-full': 3 } as const;

const FIX_VERIFY = 'use sslmode=verify-full (the default) with DATABASE_SSL_ROOT_CERT or sslrootcert=system';

// The value itself is never echoed: a key pasted without its PEM header would otherwise land in the log.
function readPem(value: string, what: string, problems: string[]): string | undefined {
  if (value.includes('-----BEGIN')) return value;
  try {
    return readFileSync(value, 'utf8');
  } catch (error) {
    problems.push(
      `${what} is neither PEM text (-----BEGIN …) nor a readable file (${(error as NodeJS.ErrnoException).code ?? 'error'}); give the PEM text itself or the path of a readable file`,
    );
    return undefined;
  }
}

/**
 * libpq's sslmode semantics with stricter defaults: verify-full unless told otherwise, plaintext only
 * under an explicit development opt-in, `require` allowed but warned about. Collects every problem.
 */
export function resolveTlsPolicy(input: TlsPolicyInput, problems: string[]): TlsPolicy {
  const warnings: string[] = [];
  const requestedMode = (input.sslmode ?? 'verify-full') as SslMode;
  if (!SSL_MODES.includes(requestedMode)) {
    problems.push(`sslmode in DATABASE_URL must be one of ${SSL_MODES.join(', ')}`);
  }
  const devOrTest = input.appEnv !== 'production';
  if (input.allowPlaintext && !devOrTest) {
    problems.push('DATABASE_ALLOW_PLAINTEXT=true is refused in production: remove it (it is only for APP_ENV=development or test)');
  }

  let mode: TlsPolicy['mode'];
  if (requestedMode === 'disable' || requestedMode === 'allow' || requestedMode === 'prefer') {
    if (!(input.allowPlaintext && devOrTest)) {
      problems.push(
        `sslmode=${requestedMode} may send credentials and data in plaintext and is refused: ${FIX_VERIFY}. ` +
          'For a local development database only, set DATABASE_ALLOW_PLAINTEXT=true with APP_ENV=development or test',
      );
    } else if (requestedMode !== 'disable') {
      // node-postgres cannot fall back between TLS and plaintext as libpq does.
      warnings.push(`sslmode=${requestedMode} is treated as disable (node-postgres cannot fall back between TLS and plaintext)`);
    }
    mode = 'disable';
  } else {
    mode = SSL_MODES.includes(requestedMode) ? (requestedMode as TlsPolicy['mode']) : 'verify-full';
  }

  let ca: string | undefined;
  let caSource: TlsPolicy['caSource'] = 'node-default';
  if (input.sslRootCert) {
    ca = readPem(input.sslRootCert, 'DATABASE_SSL_ROOT_CERT', problems);
    caSource = 'DATABASE_SSL_ROOT_CERT';
  } else if (input.sslrootcert && input.sslrootcert !== 'system') {
    ca = readPem(input.sslrootcert, 'sslrootcert in DATABASE_URL', problems);
    caSource = 'sslrootcert';
  }
  if (mode === 'require' && input.sslrootcert === 'system' && !input.sslRootCert) {
    problems.push('sslrootcert=system needs sslmode=verify-full (as in libpq): a public CA store without a host name check trusts any server');
  }
  if (mode === 'require' && caSource !== 'node-default') {
    mode = 'verify-ca'; // libpq: with a root certificate, require behaves as verify-ca
  }
  if (mode === 'verify-ca' && caSource === 'node-default') {
    problems.push(
      'sslmode=verify-ca needs your own CA (DATABASE_SSL_ROOT_CERT or sslrootcert=<file>): against the public CA store ' +
        'it would accept any server holding any publicly trusted certificate. Or use sslmode=verify-full',
    );
  }
  if (mode === 'require') {
    warnings.push(
      'sslmode=require encrypts but does not verify the server: a man-in-the-middle can read and change the traffic. ' +
        `Fix: ${FIX_VERIFY}`,
    );
  }
  if (STRENGTH[mode] < STRENGTH[input.sslMinMode] && !(mode === 'disable' && input.allowPlaintext && devOrTest)) {
    problems.push(`DATABASE_SSL_MIN_MODE=${input.sslMinMode} but the connection would use sslmode=${mode}: ${FIX_VERIFY}`);
  }
  const verifiesChain = mode === 'verify-ca' || mode === 'verify-full';
  if (verifiesChain && input.env.NODE_TLS_REJECT_UNAUTHORIZED === '0') {
    problems.push('NODE_TLS_REJECT_UNAUTHORIZED=0 disables certificate checks process-wide and contradicts the verifying sslmode: unset it');
  }

  let ssl: TlsPolicy['ssl'] = false;
  let clientCertificate: ClientCertificate | undefined;
  let caFile: TlsPolicy['caFile'];
  if (mode !== 'disable') {
    ssl = { rejectUnauthorized: verifiesChain, minVersion: 'TLSv1.2' };
    if (ca) ssl.ca = ca;
    if (mode === 'verify-ca') ssl.checkServerIdentity = () => undefined;
    clientCertificate = ClientCertificate.resolve(
      {
        cert: input.sslCert ? { value: input.sslCert, label: 'DATABASE_SSL_CERT' } : input.sslcert ? { value: input.sslcert, label: 'sslcert in DATABASE_URL' } : undefined,
        key: input.sslKey ? { value: input.sslKey, label: 'DATABASE_SSL_KEY' } : input.sslkey ? { value: input.sslkey, label: 'sslkey in DATABASE_URL' } : undefined,
        passphrase: input.sslKeyPassphrase,
      },
      problems,
    );
    if (clientCertificate) {
      ssl.cert = clientCertificate.pair.cert;
      // Decrypted once here; non-enumerable, as pg keeps it, so a dump of the options never shows it.
      Object.defineProperty(ssl, 'key', { value: clientCertificate.pair.key, enumerable: false, writable: true, configurable: true });
    }
    const caSetting = caSource === 'DATABASE_SSL_ROOT_CERT' ? input.sslRootCert : caSource === 'sslrootcert' ? input.sslrootcert : undefined;
    if (ca && caSetting && !caSetting.includes('-----BEGIN')) caFile = { path: caSetting, label: caSource === 'sslrootcert' ? 'sslrootcert in DATABASE_URL' : caSource };
  }
  return {
    requestedMode,
    mode,
    encrypted: mode !== 'disable',
    verifiesChain,
    verifiesHostname: mode === 'verify-full',
    caSource: mode === 'disable' ? 'none' : caSource,
    minMode: input.sslMinMode,
    ssl,
    caFile,
    clientCertificate,
    warnings,
  };
}
