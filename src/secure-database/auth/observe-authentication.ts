import type { EventEmitter } from 'node:events';
import type pg from 'pg';
import { ChannelBindingError, type ChannelBindingMode } from './channel-binding.js';

/**
 * How the server authenticated a connection, as seen in the protocol: `scram-sha-256-plus` (SCRAM
 * bound to the TLS channel), `scram-sha-256`, `md5`, `password` (the password itself, in cleartext
 * inside the connection), or `none` (AuthenticationOk with no challenge: trust, or a client
 * certificate under `cert`).
 */
export type AuthenticationMethod = 'scram-sha-256-plus' | 'scram-sha-256' | 'md5' | 'password' | 'none';

export interface AuthenticationObservation {
  /** Undefined until the server made its request. */
  method?: AuthenticationMethod;
  /** SASL mechanisms the server offered (AuthenticationSASL), e.g. SCRAM-SHA-256-PLUS, SCRAM-SHA-256. */
  offeredMechanisms?: string[];
  /** The server proved it knows the password's verifier (AuthenticationSASLFinal; pg checks its signature). */
  serverProofReceived: boolean;
  /** AuthenticationOk arrived. */
  authenticated: boolean;
  /** Milliseconds from the start of the connection attempt to AuthenticationOk (TCP, TLS, authentication). */
  authenticatedAfterMs?: number;
  /** Set when channel_binding=require refused the connection. */
  refusal?: ChannelBindingError;
}

/** The parts of pg 8.23's Client this reads (lib/client.js): the protocol connection of the current attempt. */
interface ClientInternals {
  connection: EventEmitter & { stream: { destroy(): void } };
  enableChannelBinding: boolean;
  saslSession?: { mechanism?: string } | null;
  /** Called by Client#_connect with each attempt's protocol connection (a multi-host connect makes one per host). */
  _attachListeners(connection: EventEmitter): void;
}

const PLUS = 'SCRAM-SHA-256-PLUS';

const byClient = new WeakMap<pg.ClientBase, AuthenticationObservation>();
const latestByKey = new WeakMap<object, AuthenticationObservation>();

/** What the most recent connection attempt of `client` showed. */
export function authenticationOf(client: pg.ClientBase): AuthenticationObservation | undefined {
  return byClient.get(client);
}

/** The most recent attempt of any client observed with this `key` (the resolved config): still there when the connection failed. */
export function latestAuthentication(key: object): AuthenticationObservation | undefined {
  return latestByKey.get(key);
}

const describe: Record<Exclude<AuthenticationMethod, 'scram-sha-256-plus'>, string> = {
  password: 'the server asked for the password in cleartext',
  md5: 'the server asked for md5 password authentication',
  'scram-sha-256': 'the server authenticated with SCRAM-SHA-256 without channel binding',
  none: 'the server let the connection in without authenticating it (trust, or a client certificate alone)',
};

/**
 * Watches how the server authenticates each connection attempt of `client` (call before connect()),
 * and under channel_binding=require refuses, while authenticating, any attempt that is not
 * SCRAM-SHA-256-PLUS completed with the server's proof: a cleartext or md5 password request, SCRAM
 * without the -PLUS mechanism on offer, or AuthenticationOk without a SCRAM exchange (trust).
 *
 * The listeners go on the protocol connection before pg's own (pg's Client#_attachListeners is wrapped
 * on this one client, nothing global), so a refusal destroys the socket before pg's handler answers
 * the request: the password, or its md5 hash, is written to a closed socket and never leaves.
 */
export function observeAuthentication(client: pg.Client, config: { channelBinding: ChannelBindingMode }): void {
  const internals = client as unknown as ClientInternals;
  const attach = internals._attachListeners;
  if (typeof attach !== 'function') {
    // pg is pinned to ~8.23; a pg without this hook must not silently stop enforcing channel binding.
    if (config.channelBinding === 'require') throw new Error('channel_binding=require cannot be enforced: this pg version has no Client#_attachListeners');
    return;
  }
  internals._attachListeners = function (this: ClientInternals, connection: EventEmitter) {
    watch(client, internals, connection as ClientInternals['connection'], config);
    attach.call(this, connection);
  };
}

function watch(client: pg.Client, internals: ClientInternals, connection: ClientInternals['connection'], config: { channelBinding: ChannelBindingMode }): void {
  const started = performance.now();
  const seen: AuthenticationObservation = { serverProofReceived: false, authenticated: false };
  byClient.set(client, seen);
  latestByKey.set(config, seen);
  const required = config.channelBinding === 'require';
  const refuse = (reason: string) => {
    if (seen.refusal) return;
    seen.refusal = new ChannelBindingError(reason);
    // Destroyed first: pg's handler for this message runs next and must have nowhere to write.
    connection.stream.destroy();
    connection.emit('error', seen.refusal);
  };

  connection.on('authenticationCleartextPassword', () => {
    seen.method = 'password';
    if (required) refuse(describe.password);
  });
  connection.on('authenticationMD5Password', () => {
    seen.method = 'md5';
    if (required) refuse(describe.md5);
  });
  connection.on('authenticationSASL', (message: { mechanisms: string[] }) => {
    seen.offeredMechanisms = [...message.mechanisms];
    // pg's choice (lib/crypto/sasl.js startSession), confirmed from its session once it exists.
    seen.method = internals.enableChannelBinding && message.mechanisms.includes(PLUS) ? 'scram-sha-256-plus' : 'scram-sha-256';
    if (required && !message.mechanisms.includes(PLUS)) refuse(`the server does not offer ${PLUS} (it offers ${message.mechanisms.join(', ') || 'nothing'})`);
  });
  connection.on('authenticationSASLContinue', () => {
    const mechanism = internals.saslSession?.mechanism;
    if (mechanism) seen.method = mechanism === PLUS ? 'scram-sha-256-plus' : 'scram-sha-256';
  });
  connection.on('authenticationSASLFinal', () => {
    seen.serverProofReceived = true;
  });
  connection.on('authenticationOk', () => {
    seen.method ??= 'none';
    seen.authenticated = true;
    seen.authenticatedAfterMs = performance.now() - started;
    if (!required) return;
    if (seen.method !== 'scram-sha-256-plus') refuse(describe[seen.method]);
    else if (!seen.serverProofReceived) refuse('the server ended the SCRAM exchange without its proof (AuthenticationOk before SASLFinal)');
  });
}
