import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type FileReport, type Parsed, WatchedFile } from './watched-file.js';

/** A setting holding PEM text or the path of a PEM file, with the name messages use for it. */
export interface PemSetting {
  value: string;
  /** DATABASE_SSL_CERT, `sslcert in DATABASE_URL` … */
  label: string;
}

/** What the TLS handshake is given: the certificate (chain) and its private key, decrypted. */
export interface ClientCertificatePair {
  cert: string;
  /** PKCS#8 PEM, never encrypted: the passphrase is used once, here, and not kept in the TLS options. */
  key: string;
  /** The certificate's subject (CN=…), for the startup log and messages: never the key. */
  subject: string;
  validTo: Date;
}

export const PASSPHRASE_LABEL = 'DATABASE_SSL_KEY_PASSPHRASE';

const isPem = (value: string) => value.includes('-----BEGIN');

function pemText(text: string, label: string): Parsed<string> {
  return text.trim() === '' ? { problem: `${label} is empty` } : isPem(text) ? { value: text } : { problem: `${label} holds no PEM (-----BEGIN …)` };
}

// The value is never echoed: a key pasted without its PEM header would otherwise land in a log.
function readSetting(setting: PemSetting, problems: string[]): string | undefined {
  if (isPem(setting.value)) return setting.value;
  try {
    const parsed = pemText(readFileSync(setting.value, 'utf8'), `the file named by ${setting.label}`);
    if ('problem' in parsed) problems.push(parsed.problem);
    return 'value' in parsed ? parsed.value : undefined;
  } catch (error) {
    problems.push(
      `${setting.label} is neither PEM text (-----BEGIN …) nor a readable file (${(error as NodeJS.ErrnoException).code ?? 'error'}); give the PEM text itself or the path of a readable file`,
    );
    return undefined;
  }
}

/**
 * Checks a client certificate and its key the way the handshake will use them: the key decrypts
 * (with the passphrase when it is encrypted), the certificate parses, is within its validity, and
 * belongs to the key. Problems name the settings, never their content or the passphrase.
 */
export function checkClientCertificate(cert: string, key: string, passphrase: string | undefined, labels: { cert: string; key: string }): Parsed<ClientCertificatePair> {
  let privateKey;
  try {
    privateKey = createPrivateKey(passphrase === undefined ? { key, format: 'pem' } : { key, format: 'pem', passphrase });
  } catch (error) {
    const code = (error as { code?: string }).code ?? '';
    const text = `${code} ${(error as Error).message}`;
    if (code === 'ERR_MISSING_PASSPHRASE' || /passphrase|interrupted or cancelled/i.test(text)) {
      return { problem: `${labels.key} is encrypted: set ${PASSPHRASE_LABEL} to its passphrase` };
    }
    if (/bad decrypt|decrypt/i.test(text)) return { problem: `${labels.key} could not be decrypted with ${PASSPHRASE_LABEL} (wrong passphrase)` };
    return { problem: `${labels.key} is not a PEM private key` };
  }
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(cert);
  } catch {
    return { problem: `${labels.cert} is not a PEM certificate` };
  }
  if (!certificate.checkPrivateKey(privateKey)) return { problem: `${labels.key} is not the private key of ${labels.cert}: give the key the certificate was issued for` };
  const now = Date.now();
  const validTo = new Date(certificate.validTo);
  if (validTo.getTime() < now) return { problem: `${labels.cert} expired on ${validTo.toISOString()}: the server would refuse it; issue a new client certificate` };
  if (new Date(certificate.validFrom).getTime() > now) return { problem: `${labels.cert} is not valid before ${new Date(certificate.validFrom).toISOString()}` };
  return {
    value: { cert, key: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string, subject: certificate.subject.replace(/\n/g, ', '), validTo },
  };
}

/**
 * The client certificate for mutual TLS (DATABASE_SSL_CERT / DATABASE_SSL_KEY, or sslcert / sslkey
 * in the URL; an encrypted key with DATABASE_SSL_KEY_PASSPHRASE), checked at startup. Settings given
 * as paths are read again for new connections when the files change, so a rotated certificate needs
 * no restart; a half-rotated pair (a new certificate, the old key) is not used until it matches.
 */
export class ClientCertificate {
  readonly labels: { cert: string; key: string };
  #pair: ClientCertificatePair;
  readonly #passphrase?: string;
  readonly #certFile?: WatchedFile<string>;
  readonly #keyFile?: WatchedFile<string>;
  #versions = '0:0';
  #reportedVersions?: string;

  private constructor(cert: PemSetting, key: PemSetting, passphrase: string | undefined, pair: ClientCertificatePair, texts: { cert: string; key: string }) {
    this.labels = { cert: cert.label, key: key.label };
    this.#pair = pair;
    this.#passphrase = passphrase;
    if (!isPem(cert.value)) this.#certFile = new WatchedFile(cert.value, cert.label, (t) => pemText(t, cert.label), texts.cert);
    if (!isPem(key.value)) this.#keyFile = new WatchedFile(key.value, key.label, (t) => pemText(t, key.label), texts.key);
  }

  /** Reads and checks the settings; undefined (with the problems listed) when there is no usable certificate. */
  static resolve(input: { cert?: PemSetting; key?: PemSetting; passphrase?: string }, problems: string[]): ClientCertificate | undefined {
    const { cert, key, passphrase } = input;
    if (!cert && !key) {
      if (passphrase !== undefined) problems.push(`${PASSPHRASE_LABEL} is set but there is no client key (DATABASE_SSL_KEY, or sslkey in DATABASE_URL)`);
      return undefined;
    }
    if (!cert || !key) {
      problems.push(
        cert
          ? `${cert.label} needs its private key: set DATABASE_SSL_KEY (or sslkey in DATABASE_URL)`
          : `${key!.label} needs its certificate: set DATABASE_SSL_CERT (or sslcert in DATABASE_URL)`,
      );
      return undefined;
    }
    const certText = readSetting(cert, problems);
    const keyText = readSetting(key, problems);
    if (certText === undefined || keyText === undefined) return undefined;
    const checked = checkClientCertificate(certText, keyText, passphrase, { cert: cert.label, key: key.label });
    if ('problem' in checked) {
      problems.push(checked.problem);
      return undefined;
    }
    return new ClientCertificate(cert, key, passphrase, checked.value, { cert: certText, key: keyText });
  }

  /** The pair in use (checked at startup, or the last good one after a rotation). */
  get pair(): ClientCertificatePair {
    return this.#pair;
  }

  /** Whether the settings are files (read again when they change) rather than PEM text. */
  get watched(): boolean {
    return this.#certFile !== undefined || this.#keyFile !== undefined;
  }

  /** For a new connection: the files read again if they changed, the new pair taken once it checks out. */
  async current(report: FileReport): Promise<ClientCertificatePair> {
    if (!this.watched) return this.#pair;
    const [cert, key] = await Promise.all([
      this.#certFile ? this.#certFile.current(report) : this.#pair.cert,
      this.#keyFile ? this.#keyFile.current(report) : undefined,
    ]);
    const versions = `${this.#certFile?.version ?? 0}:${this.#keyFile?.version ?? 0}`;
    if (versions === this.#versions) return this.#pair;
    const checked = checkClientCertificate(cert, key ?? this.#pair.key, key === undefined ? undefined : this.#passphrase, this.labels);
    if ('problem' in checked) {
      if (this.#reportedVersions !== versions) {
        this.#reportedVersions = versions;
        report({ kind: 'unusable', label: this.labels.cert, problem: checked.problem });
      }
      return this.#pair;
    }
    this.#versions = versions;
    this.#pair = checked.value;
    return this.#pair;
  }
}
