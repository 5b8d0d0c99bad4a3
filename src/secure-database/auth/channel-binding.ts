import { AuthenticationError } from '../errors/connection.errors.js';

/**
 * libpq's channel_binding: `require` accepts only SCRAM-SHA-256-PLUS (the SCRAM exchange bound to
 * this TLS channel with tls-server-end-point, so a man in the middle holding another certificate
 * cannot relay it); `prefer` uses it when the server offers it; `disable` never does.
 */
export type ChannelBindingMode = 'disable' | 'prefer' | 'require';

export const CHANNEL_BINDING_MODES: readonly ChannelBindingMode[] = ['disable', 'prefer', 'require'];

export interface ChannelBindingInput {
  /** channel_binding in DATABASE_URL. */
  url?: string;
  /** DATABASE_CHANNEL_BINDING / the channelBinding option: wins over the URL, as DATABASE_SSL_ROOT_CERT wins over sslrootcert. */
  option?: string;
  /** The TLS policy encrypts: channel binding binds to a TLS channel and means nothing without one. */
  encrypted: boolean;
}

/**
 * The effective mode. Default `disable`, node-postgres' own default (libpq's is `prefer`): turning
 * SCRAM-SHA-256-PLUS on for every existing deployment is left to the configuration.
 */
export function resolveChannelBinding(input: ChannelBindingInput, problems: string[]): ChannelBindingMode {
  const fromOption = input.option !== undefined;
  const value = (fromOption ? input.option : input.url) ?? 'disable';
  const where = fromOption ? 'DATABASE_CHANNEL_BINDING (channelBinding)' : 'channel_binding in DATABASE_URL';
  if (!CHANNEL_BINDING_MODES.includes(value as ChannelBindingMode)) {
    problems.push(`${where} must be one of ${CHANNEL_BINDING_MODES.join(', ')}`);
    return 'disable';
  }
  const mode = value as ChannelBindingMode;
  if (mode === 'require' && !input.encrypted) {
    problems.push(`${where} is require, which needs TLS (SCRAM-SHA-256-PLUS binds to the TLS channel): use a TLS sslmode or channel_binding=prefer`);
  }
  return mode;
}

/**
 * channel_binding=require and the server did not authenticate with SCRAM-SHA-256-PLUS. Raised while
 * authenticating, before anything is sent in answer to the server's request, so a server that asks
 * for a cleartext or md5 password receives neither. Never retried (an authentication failure).
 */
export class ChannelBindingError extends AuthenticationError {
  constructor(reason: string) {
    super(
      `channel binding required (channel_binding=require) but ${reason}. ` +
        'Fix: let the server authenticate this role with scram-sha-256 over TLS (pg_hba.conf, and the password stored as SCRAM), ' +
        'connect to the server itself rather than through a pooler that cannot bind, or use channel_binding=prefer',
    );
  }
}
