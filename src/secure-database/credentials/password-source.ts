import { readFileSync } from 'node:fs';
import { type ParsedDatabaseUrl, parseDatabaseUrl } from '../config/database-url.js';
import type { Parsed } from './watched-file.js';

/** Where a new connection is about to go, for a provider that signs a token per host (AWS RDS IAM). */
export interface PasswordProviderTarget {
  host: string;
  port: number;
  user: string;
  database: string;
}

/**
 * The `password` option as a function, called for each new physical connection when the server asks
 * for a password (IAM tokens: AWS RDS, Cloud SQL, Azure Entra ID). Bounded by the connect timeout;
 * its failure is a sanitized CredentialProviderError; its value is never logged.
 */
export type PasswordProvider = (target: PasswordProviderTarget) => string | Promise<string>;

/** Where the password of new connections comes from; `label` is the setting messages name. */
export type PasswordSource =
  | { kind: 'none' }
  | { kind: 'url'; label: 'DATABASE_URL' | 'DATABASE_URL_FILE' }
  | { kind: 'option'; label: 'DATABASE_PASSWORD (password)' }
  | { kind: 'file'; label: 'DATABASE_PASSWORD_FILE'; path: string }
  | { kind: 'provider'; label: 'the password option (a function)'; provider: PasswordProvider };

/** The URL file's parts a rotation may change for new connections: the user and the password. */
export interface UrlFileLogin {
  user: string;
  password?: string;
  /** Everything else (hosts, database, parameters but the credentials), to notice a change that needs a restart. */
  rest: string;
}

/** How new connections get their credentials; files are read again when they change (credentials/). */
export interface CredentialSources {
  password: PasswordSource;
  /** DATABASE_URL_FILE: read again for new connections; its user applies, and its password unless another source gives one. */
  urlFile?: { path: string; initial: UrlFileLogin };
}

export const PASSWORD_FILE_LABEL = 'DATABASE_PASSWORD_FILE';

/** A password file holds only the password; trailing line breaks (echo, editors, Docker secrets) are not part of it. */
export function parsePasswordFile(text: string): Parsed<string> {
  const password = text.replace(/[\r\n]+$/, '');
  return password === '' ? { problem: `${PASSWORD_FILE_LABEL} names an empty file` } : { value: password };
}

export function urlFileLogin(url: ParsedDatabaseUrl): UrlFileLogin {
  const { password: _p, user: _u, ...params } = url.params;
  return { user: url.user, password: url.password, rest: JSON.stringify([url.hosts, url.database, params]) };
}

/** DATABASE_URL_FILE read again: its login, or why this version cannot be used (never quoting the URL). */
export function parseUrlFile(text: string): Parsed<UrlFileLogin> {
  if (text.trim() === '') return { problem: 'DATABASE_URL_FILE names an empty file' };
  const problems: string[] = [];
  const url = parseDatabaseUrl(text, problems);
  if (!url || problems.length) return { problem: `the URL in DATABASE_URL_FILE cannot be used: ${problems[0] ?? 'it does not parse'}` };
  return { value: urlFileLogin(url) };
}

/**
 * Decides the password source: the `password` option (a string, DATABASE_PASSWORD, or a function)
 * or DATABASE_PASSWORD_FILE win over a password in the URL; the URL's otherwise. Returns the
 * password as startup knows it (a file's content, read and checked now).
 */
export function resolvePasswordSource(
  input: { password?: string | PasswordProvider; passwordFile?: string; url?: ParsedDatabaseUrl; urlFile?: string },
  problems: string[],
  warnings: string[],
): { sources: CredentialSources; password: string | PasswordProvider | undefined } {
  const { url } = input;
  const urlFile = input.urlFile && url ? { path: input.urlFile, initial: urlFileLogin(url) } : undefined;
  const fromUrl = url?.password;
  const urlLabel = input.urlFile ? 'DATABASE_URL_FILE' : 'DATABASE_URL';
  if (input.password !== undefined && input.passwordFile !== undefined) {
    problems.push('set only one of DATABASE_PASSWORD (password) and DATABASE_PASSWORD_FILE (passwordFile)');
    return { sources: { password: { kind: 'none' }, urlFile }, password: undefined };
  }
  const overridden = (by: string) => {
    if (fromUrl !== undefined) warnings.push(`${urlLabel} has a password and ${by} is set: ${by} is used`);
  };
  if (typeof input.password === 'function') {
    overridden('the password option');
    return { sources: { password: { kind: 'provider', label: 'the password option (a function)', provider: input.password }, urlFile }, password: input.password };
  }
  if (input.password !== undefined) {
    overridden('DATABASE_PASSWORD (password)');
    return { sources: { password: { kind: 'option', label: 'DATABASE_PASSWORD (password)' }, urlFile }, password: input.password };
  }
  if (input.passwordFile !== undefined) {
    overridden(PASSWORD_FILE_LABEL);
    let parsed: Parsed<string>;
    try {
      parsed = parsePasswordFile(readFileSync(input.passwordFile, 'utf8'));
    } catch (error) {
      // Not echoed: the password itself pasted here by mistake would land in the log.
      parsed = { problem: `${PASSWORD_FILE_LABEL} names no readable file (${(error as NodeJS.ErrnoException).code ?? 'error'}): give the path of the mounted secret file` };
    }
    if ('problem' in parsed) problems.push(parsed.problem);
    return {
      sources: { password: { kind: 'file', label: PASSWORD_FILE_LABEL, path: input.passwordFile }, urlFile },
      password: 'value' in parsed ? parsed.value : undefined,
    };
  }
  return { sources: { password: fromUrl === undefined ? { kind: 'none' } : { kind: 'url', label: urlLabel }, urlFile }, password: fromUrl };
}
