import { describe, expect, it } from '@jest/globals';
import fc from 'fast-check';
import { parseDatabaseUrl, redactUrl } from './database-url.js';
import { resolveDatabaseConfig } from './resolve-database-config.js';

function parse(raw: string): { url: ReturnType<typeof parseDatabaseUrl>; problems: string[] } {
  const problems: string[] = [];
  return { url: parseDatabaseUrl(raw, problems), problems };
}

/** The ConfigurationError's message, or '' when the URL resolves. */
function startupMessage(raw: string): string {
  try {
    resolveDatabaseConfig({ url: raw }, {});
    return '';
  } catch (error) {
    return (error as Error).message;
  }
}

// Passwords as people paste them, unencoded: each holds a character that ends the user info somewhere.
// Odd letters, so that a fragment found in a message is a leak, not a word of the message.
const RAW_PASSWORDS = ['pQ@sZ', 'pQ@sZ/wXrd', 'aQ#bZ', 'aQ?bZ', 'aQ/bZ@cX', 'xQ@yZ@zX', 'sQ@crZt', '1/bZq', '5432#tZq'];
const HOSTS = ['db.example.com:5432', '[::1]:5433', '[2001:db8::7]', 'h1:5432,h2:5433', 'h1,[::1]:6000'];

describe('parseDatabaseUrl: where the user info ends', () => {
  it.each(RAW_PASSWORDS.flatMap((pw) => HOSTS.map((host) => [pw, host])))('password %j unencoded, host %j: refused, the password in no problem', (pw, host) => {
    const { url, problems } = parse(`postgresql://app:${pw}@${host}/shop`);
    expect(url).toBeUndefined();
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/percent-encode .* (as %40|%2F)/);
    for (const part of [pw, ...pw.split(/[@/?#]/).filter((s) => s.length >= 2)]) expect(problems[0]).not.toContain(part);
  });

  it('more than one @ names the fix for @ itself', () => {
    expect(parse('postgresql://app:se@cret@127.0.0.1:5432/db').problems).toEqual([
      'DATABASE_URL has more than one unencoded @: percent-encode @ in the user name or password as %40',
    ]);
  });

  it.each(RAW_PASSWORDS.flatMap((pw) => HOSTS.map((host) => [pw, host])))('password %j percent-encoded, host %j: the hosts and password as meant', (pw, host) => {
    const { url, problems } = parse(`postgresql://app:${encodeURIComponent(pw)}@${host}/shop`);
    expect(problems).toEqual([]);
    expect(url).toMatchObject({ user: 'app', password: pw, database: 'shop' });
    const expected = host.split(',').map((entry) => {
      const m = /^(?:\[(.*)\]|([^:]*))(?::(\d+))?$/.exec(entry)!;
      return { host: m[1] ?? m[2], port: Number(m[3] ?? 5432) };
    });
    expect(url!.hosts).toEqual(expected);
  });

  it('an @ in the user name (user@server, as some clouds name users) must be encoded too', () => {
    expect(parse('postgresql://app@srv:pw@srv.example.com/db').url).toBeUndefined();
    expect(parse('postgresql://app%40srv:pw@srv.example.com/db').url).toMatchObject({ user: 'app@srv', host: 'srv.example.com' });
  });

  it('no user info: an @ after the host (in a parameter) must be encoded, as %40 works there', () => {
    expect(parse('postgresql://app:pw@h/db?application_name=a@b').url).toBeUndefined();
    expect(parse('postgresql://app:pw@h/db?application_name=a%40b').url?.params.application_name).toBe('a@b');
  });

  it('refused at startup without echoing any part of the URL after the scheme', () => {
    const message = startupMessage('postgresql://app:se@cret@127.0.0.1:5432/db');
    expect(message).toMatch(/more than one unencoded @/);
    for (const part of ['cret', '127.0.0.1', 'se@', 'app:']) expect(message).not.toContain(part);
  });
});

describe('redactUrl', () => {
  it.each([
    ['postgresql://app:p@ss@h/db', 'postgresql://app:***@h/db'],
    ['postgresql://app:p@ss/word@h/db', 'postgresql://app:***@h/db'],
    ['postgresql://app:a#b@h/db', 'postgresql://app:***@h/db'],
    ['postgresql://app:a?b@h/db', 'postgresql://app:***@h/db'],
    ['postgresql://app:a/b@c@h/db', 'postgresql://app:***@h/db'],
    ['postgresql://app:x@y@z@[::1]:5433/db', 'postgresql://app:***@[::1]:5433/db'],
    ['postgresql://app:pw@h1:5432,[::1]:5433/db', 'postgresql://app:***@h1:5432,[::1]:5433/db'],
    ['postgresql://app@h/db', 'postgresql://app@h/db'],
    ['postgresql://h/db', 'postgresql://h/db'],
    // A user name that cannot be told from the password: all of the user info goes.
    ['postgresql://app@srv:pw@h/db', 'postgresql://***@h/db'],
    ['postgresql://a/b:pw@h/db', 'postgresql://***@h/db'],
    ['postgresql://app:pw@h/db?sslmode=require&password=x#y', 'postgresql://app:***@h/db?sslmode=require&password=***#y'],
  ])('%j → %j', (raw, redacted) => {
    expect(redactUrl(raw)).toBe(redacted);
  });
});

describe('a password with any characters appears in neither redactUrl nor a problem', () => {
  // Printable ASCII, weighted towards the characters that end or split a URL's user info.
  const char = fc.oneof(fc.constantFrom('@', '/', '?', '#', ':', '%', '[', ']', ',', '&', '='), fc.integer({ min: 0x21, max: 0x7e }).map((c) => String.fromCharCode(c)));
  // Long and distinctive enough that a match is a leak, not a coincidence with the rest of the URL.
  const password = fc.array(char, { minLength: 6, maxLength: 24 }).map((cs) => `Zq${cs.join('')}Xj`);
  const host = fc.constantFrom(...HOSTS);

  it('raw or percent-encoded, one host or a list', () => {
    fc.assert(
      fc.property(password, host, fc.boolean(), (pw, h, encode) => {
        const raw = `postgresql://app:${encode ? encodeURIComponent(pw) : pw}@${h}/shop?sslmode=verify-full`;
        // Not even its first or last two characters: no part of it survives.
        expect(redactUrl(raw)).not.toMatch(/Zq|Xj/);
        const { url, problems } = parse(raw);
        for (const problem of problems) expect(problem).not.toContain(pw.slice(2, -2));
        // When it parses, the password is the password: none of it ended up in a host, the database or a parameter name.
        if (url) {
          if (encode) expect(url.password).toBe(pw);
          expect(JSON.stringify([url.hosts, url.database, Object.keys(url.params)])).not.toMatch(/Zq|Xj/);
        }
        const message = startupMessage(raw);
        expect(message).not.toMatch(/Zq|Xj/);
      }),
      { numRuns: 500 },
    );
  });
});
