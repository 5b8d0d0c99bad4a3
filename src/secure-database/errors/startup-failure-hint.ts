import type { Logger } from '@nestjs/common';
import { SecureDatabaseError, type DatabaseErrorCode } from './secure-database.error.js';

// What to change, per failure kind: the startup log line names the cause and the fix.
const HINTS: Partial<Record<DatabaseErrorCode, string>> = {
  DB_CONFIGURATION: 'Fix the settings listed above.',
  DB_SSL_NOT_ACTIVE:
    'Connect to a server that offers TLS (check the host and port in DATABASE_URL; a proxy in between must not terminate TLS).',
  DB_TLS_VERIFICATION_FAILED:
    'Set DATABASE_SSL_ROOT_CERT to the CA that signed the server certificate (or sslrootcert=system for a public CA) and make sure the host in DATABASE_URL is the one the certificate names. When the server refused the client certificate, use one issued by the CA the server trusts (DATABASE_SSL_CERT and DATABASE_SSL_KEY).',
  DB_AUTHENTICATION_FAILED:
    'Check the credentials the message names (the user and password in DATABASE_URL, DATABASE_PASSWORD_FILE or the password option; the client certificate in DATABASE_SSL_CERT and DATABASE_SSL_KEY), and that this role may connect to the database.',
  DB_CONNECTION_FAILED: 'Check the host and port in DATABASE_URL and that the database accepts connections from here.',
  DB_CONNECT_TIMEOUT:
    'Check the host and port in DATABASE_URL and any firewall in between; on a slow network raise DATABASE_CONNECT_TIMEOUT_MS.',
  DB_TOO_MANY_CONNECTIONS: "Lower DATABASE_POOL_MAX across instances, or connect through the provider's pooler.",
};

export function startupFailureHint(code: DatabaseErrorCode): string {
  return HINTS[code] ?? 'See the error code in the README troubleshooting table.';
}

/** The one line a failed startup logs: the cause (sanitized in production) and the fix. */
export function logStartupFailure(logger: Logger, error: unknown): void {
  if (error instanceof SecureDatabaseError) logger.error(`Database startup failed [${error.code}]: ${error.message}. ${startupFailureHint(error.code)}`);
}
