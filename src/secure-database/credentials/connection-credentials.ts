import type { Logger } from '@nestjs/common';
import pg from 'pg';
import type { ConnectionOptions } from 'node:tls';
import type { ResolvedDatabaseConfig } from '../config/resolve-database-config.js';
import { AuthenticationError, TlsVerificationError } from '../errors/connection.errors.js';
import { SecureDatabaseError } from '../errors/secure-database.error.js';
import { PASSWORD_FILE_LABEL, type PasswordProviderTarget, type UrlFileLogin, parsePasswordFile, parseUrlFile } from './password-source.js';
import { type FileReport, type Parsed, WatchedFile } from './watched-file.js';

/**
 * The password provider (the `password` option as a function) threw, returned no password, or had not
 * answered when the connect timeout (DATABASE_CONNECT_TIMEOUT_MS) ran out. An AuthenticationError
 * (DB_AUTHENTICATION_FAILED): startup does not retry it. In production neither the message nor the
 * cause carries the provider's own message.
 */
export class CredentialProviderError extends AuthenticationError {}

/** What a new connection used, so a refusal can be explained and a rotated file noticed. */
interface Attempt {
  passwordFileVersion: number;
  urlFileVersion: number;
  provider?: 'pending' | 'done' | 'failed';
}

/** pg 8.23 Client fields a new connection's credentials are set on before it dials (as failover/ sets host and port). */
interface ClientInternals {
  user: string;
  host: string;
  port: number;
  connectionParameters: { user: string; password?: unknown; ssl: false | ConnectionOptions; database: string };
}

// A client certificate this close to its end is warned about at startup (the server refuses an expired one).
const CLIENT_CERTIFICATE_WARNING_DAYS = 30;

const CLIENT_CERTIFICATE_SETTINGS = 'DATABASE_SSL_CERT and DATABASE_SSL_KEY (or sslcert and sslkey in DATABASE_URL)';

// TLS alerts a server sends about the client's certificate (Node: ERR_SSL_TLSV1_ALERT_UNKNOWN_CA …).
const CERTIFICATE_ALERTS: Record<string, string> = {
  UNKNOWN_CA: "it is not signed by a CA the server trusts (the server's ssl_ca_file)",
  BAD_CERTIFICATE: 'the server could not verify it',
  UNSUPPORTED_CERTIFICATE: 'the server does not accept this kind of certificate',
  CERTIFICATE_UNKNOWN: 'the server could not verify it',
  CERTIFICATE_EXPIRED: 'it has expired',
  CERTIFICATE_REVOKED: "it has been revoked (the server's ssl_crl_file)",
  DECRYPT_ERROR: 'its key did not sign the handshake',
  ACCESS_DENIED: 'the server accepts no certificate from this CA',
};

function pemCertificates(label: string) {
  return (text: string): Parsed<string> => (text.includes('-----BEGIN CERTIFICATE') ? { value: text } : { problem: `${label} holds no PEM certificate` });
}

/** A password given back by a provider: a non-empty string, never echoed. */
function describeNonPassword(value: unknown): string {
  if (value === '') return 'an empty string';
  return value === null ? 'null' : typeof value;
}

/**
 * Credentials of each new physical connection. The pool builds every pg.Client with `clientConfig()`
 * (its own TLS options object) and calls `prepare()` before it dials: DATABASE_PASSWORD_FILE,
 * DATABASE_URL_FILE and the CA and client certificate files given as paths are read again when
 * fs.stat says they changed, so a rotated secret reaches new connections without a restart while
 * open ones keep working until they retire. A password provider is called when the server asks
 * for a password. `explain()` turns a refused connection into an error naming the setting concerned.
 */
export class ConnectionCredentials {
  readonly #passwordFile?: WatchedFile<string>;
  readonly #urlFile?: WatchedFile<UrlFileLogin>;
  readonly #caFile?: WatchedFile<string>;
  readonly #attempts = new WeakMap<pg.Client, Attempt>();
  /** The error a failed connection reported → what it had used (the pool sees only the error). */
  readonly #failures = new WeakMap<object, Attempt>();
  readonly #report: FileReport;
  #warnedUrlFileVersion = 0;

  constructor(
    private readonly config: ResolvedDatabaseConfig,
    private readonly logger: Logger,
  ) {
    const { credentials, tls } = config;
    if (credentials.password.kind === 'file') {
      this.#passwordFile = new WatchedFile(credentials.password.path, PASSWORD_FILE_LABEL, parsePasswordFile, config.client.password as string);
    }
    if (credentials.urlFile) this.#urlFile = new WatchedFile(credentials.urlFile.path, 'DATABASE_URL_FILE', parseUrlFile, credentials.urlFile.initial);
    if (tls.caFile && tls.ssl && typeof tls.ssl.ca === 'string') {
      this.#caFile = new WatchedFile(tls.caFile.path, tls.caFile.label, pemCertificates(tls.caFile.label), tls.ssl.ca);
    }
    this.#report = ({ kind, label, problem }) => {
      if (kind === 'changed') this.logger.log(`${label} changed: new connections use it (open connections keep theirs until they retire)`);
      else this.logger.warn(`${problem}: new connections keep using the previous value`);
    };
    const certificate = tls.clientCertificate;
    const daysLeft = certificate ? Math.floor((certificate.pair.validTo.getTime() - Date.now()) / 86_400_000) : Infinity;
    if (certificate && daysLeft < CLIENT_CERTIFICATE_WARNING_DAYS) {
      this.logger.warn(
        `The client certificate (${certificate.labels.cert}) expires in ${daysLeft} day(s), on ${certificate.pair.validTo.toISOString()}: renew it` +
          (certificate.watched ? ' (new files at the same paths are used by new connections without a restart)' : ''),
      );
    }
  }

  /** Whether anything can differ between connections: a file to watch, a provider, a client certificate. */
  get dynamic(): boolean {
    return (
      this.#passwordFile !== undefined ||
      this.#urlFile !== undefined ||
      this.#caFile !== undefined ||
      this.config.credentials.password.kind === 'provider' ||
      this.config.tls.clientCertificate?.watched === true
    );
  }

  /** One line for the startup log: where the credentials come from and what is read again (never a value). */
  describe(): string | undefined {
    const parts: string[] = [];
    const { password } = this.config.credentials;
    if (password.kind === 'file') parts.push(`password from ${PASSWORD_FILE_LABEL}, read again for new connections when it changes`);
    if (password.kind === 'provider') parts.push('password from the password option (a function), called for each new connection');
    if (this.#urlFile) parts.push('DATABASE_URL_FILE read again for new connections when it changes (its user and password apply)');
    if (this.#caFile) parts.push(`${this.#caFile.label} read again when it changes`);
    const certificate = this.config.tls.clientCertificate;
    if (certificate) {
      const { subject, validTo } = certificate.pair;
      parts.push(`client certificate ${certificate.labels.cert} (${subject}, valid until ${validTo.toISOString()})${certificate.watched ? ', read again when it changes' : ''}`);
    }
    return parts.length ? `Credentials: ${parts.join('; ')}` : undefined;
  }

  /** The config a new pg.Client is built with: its own TLS options object when certificates can rotate. */
  clientConfig(): pg.ClientConfig {
    const base = this.config.client;
    if (!this.dynamic) return base;
    const config: pg.ClientConfig = { ...base };
    Object.defineProperty(config, 'password', { value: base.password, enumerable: false, writable: true, configurable: true });
    // pg makes `key` non-enumerable on the object it is given: copied by name, not by spreading.
    if (base.ssl && typeof base.ssl === 'object') config.ssl = withKey({ ...base.ssl }, base.ssl.key);
    return config;
  }

  /** Before a new connection dials: the current files (read again if they changed), set on this client. */
  async prepare(client: pg.Client): Promise<void> {
    if (!this.dynamic) return;
    const attempt: Attempt = { passwordFileVersion: 0, urlFileVersion: 0 };
    this.#attempts.set(client, attempt);
    const [filePassword, login, ca, pair] = await Promise.all([
      this.#passwordFile?.current(this.#report),
      this.#urlFile?.current(this.#report),
      this.#caFile?.current(this.#report),
      this.config.tls.clientCertificate?.current(this.#report),
    ]);
    attempt.passwordFileVersion = this.#passwordFile?.version ?? 0;
    attempt.urlFileVersion = this.#urlFile?.version ?? 0;
    const c = client as unknown as ClientInternals;
    if (login) {
      c.user = c.connectionParameters.user = login.user;
      this.warnIfUrlFileMovedOn(login);
    }
    const source = this.config.credentials.password;
    if (source.kind === 'file') setPassword(client, filePassword);
    else if (source.kind === 'url' && login) setPassword(client, login.password);
    else if (source.kind === 'provider') this.installProvider(client, attempt);
    const ssl = c.connectionParameters.ssl;
    if (ssl) {
      if (ca !== undefined) ssl.ca = ca;
      if (pair) {
        ssl.cert = pair.cert;
        withKey(ssl, pair.key);
      }
    }
  }

  /**
   * A new connection failed: the error to report. A provider still running is the cause whatever pg
   * says (its stream was closed at the connect timeout); a refusal by the server about the client
   * certificate or the password names the setting. Other errors are returned as they are.
   */
  explain(error: unknown, client: pg.Client): unknown {
    const attempt = this.#attempts.get(client);
    if (attempt?.provider === 'pending') {
      return this.providerError(`did not answer within the connect timeout (DATABASE_CONNECT_TIMEOUT_MS, ${this.config.timeouts.connectMs} ms)`, undefined);
    }
    const explained = error instanceof SecureDatabaseError ? error : (this.explainRefusal(error) ?? error);
    if (attempt && explained && typeof explained === 'object') this.#failures.set(explained, attempt);
    return explained;
  }

  /**
   * After a new connection's password was refused (28P01): DATABASE_PASSWORD_FILE and DATABASE_URL_FILE
   * are read again whatever fs.stat says (a writer caught half way, a rewrite stat cannot see). True
   * when they now hold another value than the one refused: the pool then tries once more.
   */
  async renewedAfterRejection(error: unknown): Promise<boolean> {
    const attempt = error && typeof error === 'object' ? this.#failures.get(error) : undefined;
    const sqlstate = (error as { sqlstate?: string } | undefined)?.sqlstate ?? (error as { code?: string } | undefined)?.code;
    if (!attempt || sqlstate !== '28P01' || (!this.#passwordFile && !this.#urlFile)) return false;
    await Promise.all([this.#passwordFile?.current(this.#report, { force: true }), this.#urlFile?.current(this.#report, { force: true })]);
    const renewed = (this.#passwordFile?.version ?? 0) !== attempt.passwordFileVersion || (this.#urlFile?.version ?? 0) !== attempt.urlFileVersion;
    if (renewed) this.logger.log('The server refused the password a new connection used, and the secret file now holds another one: trying once more');
    return renewed;
  }

  private warnIfUrlFileMovedOn(login: UrlFileLogin): void {
    const version = this.#urlFile!.version;
    if (login.rest === this.config.credentials.urlFile!.initial.rest || this.#warnedUrlFileVersion === version) return;
    this.#warnedUrlFileVersion = version;
    this.logger.warn('DATABASE_URL_FILE now names another host, port, database or parameters: new connections take only its user and password; restart the app to apply the rest');
  }

  /**
   * The provider, called when the server asks this connection for a password, once per host tried:
   * pg keeps the value it got in `password`, so the property keeps one value per host (a token is
   * signed for one host) and gives the provider back for a host that has none yet.
   */
  private installProvider(client: pg.Client, attempt: Attempt): void {
    const source = this.config.credentials.password;
    if (source.kind !== 'provider') return;
    const c = client as unknown as ClientInternals;
    const tokens = new Map<string, string>();
    const where = () => `${c.host}:${c.port}`;
    const call = async (): Promise<string> => {
      attempt.provider = 'pending';
      const target: PasswordProviderTarget = { host: c.host, port: c.port, user: c.user, database: c.connectionParameters.database };
      let value: unknown;
      try {
        value = await source.provider(target);
      } catch (error) {
        attempt.provider = 'failed';
        throw this.providerError(`threw an exception (${error instanceof Error ? error.name : `not an Error: ${error === null ? 'null' : typeof error}`})`, error);
      }
      if (typeof value !== 'string' || value === '') {
        attempt.provider = 'failed';
        throw this.providerError(`returned ${describeNonPassword(value)} instead of the password (a non-empty string)`, undefined);
      }
      attempt.provider = 'done';
      return value;
    };
    Object.defineProperty(client, 'password', {
      configurable: true,
      enumerable: false,
      get: () => tokens.get(where()) ?? call,
      set: (value: unknown) => {
        if (typeof value === 'string') tokens.set(where(), value);
      },
    });
  }

  private providerError(what: string, error: unknown): CredentialProviderError {
    const message = `the password provider (the password option, a function) ${what}`;
    if (!this.config.verboseErrors) {
      const code = (error as { code?: unknown } | undefined)?.code;
      return new CredentialProviderError(message, { cause: typeof code === 'string' ? { code } : {} });
    }
    return new CredentialProviderError(error instanceof Error ? `${message}: ${error.message}` : message, { cause: error });
  }

  /** The server refused the client certificate, or the password, of a new connection: say which setting to look at. */
  private explainRefusal(error: unknown): SecureDatabaseError | undefined {
    const code = (error as { code?: unknown } | undefined)?.code;
    if (typeof code !== 'string') return undefined;
    const certificate = this.config.tls.clientCertificate;
    const alert = /^ERR_SSL_(?:SSLV3|TLSV1|TLSV13)_ALERT_(.+)$/.exec(code)?.[1];
    if (alert) {
      if (certificate) {
        const why = CERTIFICATE_ALERTS[alert] ?? `TLS alert ${alert.toLowerCase().replace(/_/g, ' ')}`;
        return this.build(TlsVerificationError, `TLS verification failed: the server refused the client certificate (${certificate.labels.cert}): ${why}`, error);
      }
      if (alert === 'CERTIFICATE_REQUIRED') return this.build(TlsVerificationError, `TLS verification failed: the server requires a client certificate: set ${CLIENT_CERTIFICATE_SETTINGS}`, error);
      return undefined;
    }
    if (!(error instanceof pg.DatabaseError) || !code.startsWith('28')) return undefined;
    const aboutCertificate = /certificate/i.test(error.message);
    const password = this.config.credentials.password;
    let message: string;
    if (aboutCertificate && !certificate) {
      message = `the server requires a client certificate and none is configured: set ${CLIENT_CERTIFICATE_SETTINGS}`;
    } else if (aboutCertificate) {
      message = `the server refused the client certificate (${certificate!.labels.cert}): its CN must be the database user name (or mapped to it in pg_ident.conf)`;
    } else if (code === '28P01' && password.kind !== 'none' && (password.kind !== 'url' || certificate)) {
      message =
        `the server refused the password from ${password.label}` +
        (certificate ? ` (or, under clientcert=verify-full in pg_hba.conf, the client certificate ${certificate.labels.cert}: its CN must be the user name)` : '');
    } else if (certificate) {
      message = `the server refused this connection: check pg_hba.conf for this user and address, and the client certificate (${certificate.labels.cert})`;
    } else {
      return undefined;
    }
    return this.build(AuthenticationError, `authentication failed: ${message}`, error, code);
  }

  private build(Cls: typeof AuthenticationError | typeof TlsVerificationError, message: string, error: unknown, sqlstate?: string): SecureDatabaseError {
    const summary = sqlstate ? `${message} (SQLSTATE ${sqlstate})` : message;
    if (!this.config.verboseErrors) return new Cls(summary, { cause: { code: (error as { code: string }).code }, sqlstate });
    return new Cls(`${summary}: ${error instanceof Error ? error.message : String(error)}`, { cause: error, sqlstate });
  }
}

function setPassword(client: pg.Client, password: string | undefined): void {
  if (password === undefined) return;
  const c = client as unknown as ClientInternals & { password?: unknown };
  c.password = c.connectionParameters.password = password;
}

/** The private key on a TLS options object, non-enumerable as pg keeps it (it never shows in a dump of the client). */
function withKey(ssl: ConnectionOptions, key: ConnectionOptions['key']): ConnectionOptions {
  if (key !== undefined) Object.defineProperty(ssl, 'key', { value: key, enumerable: false, writable: true, configurable: true });
  return ssl;
}
