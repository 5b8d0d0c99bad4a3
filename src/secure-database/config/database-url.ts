import { parse } from 'pg-connection-string';

export interface ParsedDatabaseUrl {
  host: string;
  port: number;
  database: string;
  user: string;
  password: string | undefined;
  /** Query parameters, names as given (sslmode, sslrootcert, connect_timeout, ...). As in libpq, host, port, user, password and dbname among them override the URL's own parts. */
  params: Record<string, string>;
}

/** Replaces the password in anything URL-shaped, even when the URL does not parse. */
export function redactUrl(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/?#@]*):[^@/?#]*(?=@)/i, '$1:***').replace(/([?&]password=)[^&]*/gi, '$1***');
}

// TLS files are read by the TLS policy, not by pg-connection-string (which would also read "system" as a path).
const TLS_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey'];

/**
 * Parses DATABASE_URL with pg-connection-string, keeping the TLS parameters apart so that nothing in
 * the URL can replace the TLS settings the policy builds. Problems never quote the URL or its password.
 */
export function parseDatabaseUrl(raw: string, problems: string[]): ParsedDatabaseUrl | undefined {
  const url = raw.trim();
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1];
  if (!scheme || !/^postgres(ql)?$/i.test(scheme)) {
    problems.push(`DATABASE_URL must start with postgres:// or postgresql://${scheme ? ` (it starts with ${scheme}://)` : ''}`);
    return undefined;
  }
  const hostList = () => problems.push('DATABASE_URL lists several hosts: host lists (failover, target_session_attrs) are not supported yet; give one host');
  // The WHATWG parser rejects libpq's host lists outright; say what it is instead of "not a valid URL".
  if (/^[^:]+:\/\/(?:[^@/?#]*@)?[^/?#]*,/.test(url)) {
    hostList();
    return undefined;
  }
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(url);
  } catch {
    problems.push('DATABASE_URL is not a valid URL: percent-encode special characters in the user name and password (e.g. @ as %40, # as %23, / as %2F)');
    return undefined;
  }
  const params: Record<string, string> = {};
  for (const [key, value] of parsedUrl.searchParams) params[key] = value;
  if (params.host?.includes(',')) {
    hostList();
    return undefined;
  }
  for (const key of TLS_PARAMS) parsedUrl.searchParams.delete(key);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(parsedUrl.href);
  } catch {
    problems.push('DATABASE_URL could not be parsed: check the host, port and percent-encoding');
    return undefined;
  }
  const host = parsed.host ?? '';
  if (!host) problems.push('DATABASE_URL has no host name');
  else if (host.startsWith('/')) problems.push('DATABASE_URL names a Unix socket: TLS cannot be verified there; use a TCP host');
  const port = parsed.port ? Number(parsed.port) : 5432;
  if (!Number.isInteger(port) || port < 1 || port > 65535) problems.push('DATABASE_URL has an invalid port');
  const user = parsed.user ?? '';
  if (!user) problems.push('DATABASE_URL has no user name (postgresql://USER:PASSWORD@HOST/DATABASE)');
  return {
    host,
    port,
    // pg-connection-string reads host, port, user and password from the query string (as libpq does)
    // but not dbname, which libpq also lets override the path.
    database: params.dbname || parsed.database || user,
    user,
    password: parsed.password || undefined,
    params,
  };
}
