import { parse } from 'pg-connection-string';

/** One entry of a libpq host list. */
export interface HostPort {
  host: string;
  port: number;
}

export interface ParsedDatabaseUrl {
  /** The first host (the only one, usually). */
  host: string;
  port: number;
  /** Every host, in the URL's order: libpq's host list (`h1:5432,h2:5433`, or host=h1,h2&port=…). */
  hosts: HostPort[];
  database: string;
  user: string;
  password: string | undefined;
  /** Query parameters, names as given (sslmode, sslrootcert, connect_timeout, ...). As in libpq, host, port, user, password and dbname among them override the URL's own parts. */
  params: Record<string, string>;
}

/**
 * Replaces the password in anything URL-shaped, even when the URL does not parse. A password may hold
 * an unencoded @, /, ? or # (the very URLs that do not parse), so everything between `//` and the LAST
 * @ is treated as user info: the user name is kept when it is a plain name, else all of it is `***`.
 * An @ further on (in a query value) only makes this redact more than it needs to.
 */
export function redactUrl(raw: string): string {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)(.*)@(.*)$/is.exec(raw);
  let redacted = raw;
  if (match) {
    const [, prefix, userinfo, rest] = match;
    const colon = userinfo.indexOf(':');
    // No colon: no password in the user info (user names end at the first colon, as in libpq and WHATWG).
    const user = colon === -1 ? userinfo : userinfo.slice(0, colon);
    const plain = /^[^@/?#\s]*$/.test(user);
    redacted = `${prefix}${!plain ? '***' : colon === -1 ? user : `${user}:***`}@${rest}`;
  }
  return redacted.replace(/([?&]password=)[^&#]*/gi, '$1***');
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
  // The user info ends at the first @ here and at the last one for WHATWG URL: with an unencoded @ (or
  // /, ? or # before the @) in the password, its tail would become the host name (printed, and sent to
  // DNS), the database or a parameter name. Only a URL whose one @ precedes any / ? # is unambiguous.
  const afterScheme = url.slice(scheme.length + 3);
  const ats = afterScheme.split('@').length - 1;
  if (ats > 1) {
    problems.push('DATABASE_URL has more than one unencoded @: percent-encode @ in the user name or password as %40');
    return undefined;
  }
  if (ats === 1 && /[/?#]/.test(afterScheme.slice(0, afterScheme.indexOf('@')))) {
    problems.push('DATABASE_URL has a /, ? or # before its @: percent-encode them in the user name or password (/ as %2F, ? as %3F, # as %23), and an @ elsewhere as %40');
    return undefined;
  }
  // The WHATWG parser rejects libpq's host lists: they are taken apart here, and the URL parsed with
  // the first host (or a stand-in when the hosts are only in the query string: host=h1,h2).
  const [, prefix, userinfo = '', authority, rest] = /^([^:]+:\/\/)([^@/?#]*@)?([^/?#]*)(.*)$/s.exec(url)!;
  const listed = splitHostList(authority);
  let parsedUrl: URL;
  try {
    parsedUrl = new URL(`${prefix}${userinfo}${listed[0] || 'host.invalid'}${rest}`);
  } catch {
    problems.push('DATABASE_URL is not a valid URL: percent-encode special characters in the user name and password (e.g. @ as %40, # as %23, / as %2F)');
    return undefined;
  }
  const params: Record<string, string> = {};
  for (const [key, value] of parsedUrl.searchParams) params[key] = value;
  // Host and port lists are resolved below; pg-connection-string reads one host and one port.
  for (const key of [...TLS_PARAMS, 'host', 'port']) parsedUrl.searchParams.delete(key);
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(parsedUrl.href);
  } catch {
    problems.push('DATABASE_URL could not be parsed: check the host, port and percent-encoding');
    return undefined;
  }
  const hosts = resolveHosts(listed, params, problems);
  const user = parsed.user ?? '';
  if (!user) problems.push('DATABASE_URL has no user name (postgresql://USER:PASSWORD@HOST/DATABASE)');
  return {
    host: hosts[0]?.host ?? '',
    port: hosts[0]?.port ?? DEFAULT_PORT,
    hosts,
    // pg-connection-string reads host, port, user and password from the query string (as libpq does)
    // but not dbname, which libpq also lets override the path.
    database: params.dbname || parsed.database || user,
    user,
    password: parsed.password || undefined,
    params,
  };
}

const DEFAULT_PORT = 5432;

/** `h1:5432,[::1]:5433,h3` → ['h1:5432', '[::1]:5433', 'h3'] (the authority of a URL, after the user info). */
function splitHostList(authority: string): string[] {
  return authority === '' ? [] : authority.split(',');
}

function hostAndPort(entry: string): { host: string; port?: string } {
  const match = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(entry)!;
  const host = match[1].replace(/^\[(.*)\]$/, '$1');
  let decoded: string;
  try {
    decoded = decodeURIComponent(host);
  } catch {
    decoded = host; // not percent-encoding after all: the DNS lookup will say what is wrong with it
  }
  return { host: decoded, port: match[2] || undefined };
}

/**
 * libpq's rules: `host` and `port` in the query string replace the URL's; a port list has one port for
 * every host, or a single port for all of them; a host without a port uses 5432.
 */
function resolveHosts(listed: string[], params: Record<string, string>, problems: string[]): HostPort[] {
  const fromUrl = listed.map(hostAndPort);
  const names = params.host !== undefined ? params.host.split(',') : fromUrl.map((h) => h.host);
  let ports: Array<string | undefined> = params.port !== undefined ? params.port.split(',') : fromUrl.map((h) => h.port);
  if (ports.length === 1 && names.length > 1) ports = names.map(() => ports[0]);
  if (ports.length > 1 && ports.length !== names.length) {
    problems.push(`DATABASE_URL lists ${names.length} hosts and ${ports.length} ports: give one port for every host, or one for all`);
    return [];
  }
  if (names.length === 0 || names.some((h) => h.trim() === '')) {
    problems.push(names.length > 1 ? 'DATABASE_URL has an empty entry in its host list' : 'DATABASE_URL has no host name');
    return [];
  }
  if (names.some((h) => h.startsWith('/'))) {
    problems.push('DATABASE_URL names a Unix socket: TLS cannot be verified there; use a TCP host');
    return [];
  }
  const hosts = names.map((host, i) => ({ host, port: ports[i] === undefined || ports[i] === '' ? DEFAULT_PORT : Number(ports[i]) }));
  if (hosts.some(({ port }) => !Number.isInteger(port) || port < 1 || port > 65535)) {
    problems.push('DATABASE_URL has an invalid port');
    return [];
  }
  return hosts;
}
