import pg from 'pg';
import { InvalidQueryError } from '../errors/query.errors.js';

// NAMEDATALEN - 1: the server truncates a longer channel name (LISTEN) or refuses it (pg_notify).
const MAX_CHANNEL_BYTES = 63;
// The server refuses a payload of 8000 bytes or more (NOTIFY_PAYLOAD_MAX_LENGTH, counted in the server's encoding).
export const MAX_PAYLOAD_BYTES = 7999;

/** A channel name checked: used exactly as given (case kept), quoted as an identifier in LISTEN. */
export function checkedChannel(channel: unknown): string {
  if (typeof channel !== 'string' || channel.length === 0) throw new InvalidQueryError('A notification channel is a non-empty string');
  if (channel.includes('\0')) throw new InvalidQueryError('A notification channel must not contain a NUL character');
  if (Buffer.byteLength(channel) > MAX_CHANNEL_BYTES) throw new InvalidQueryError(`A notification channel name is at most ${MAX_CHANNEL_BYTES} bytes (PostgreSQL's identifier limit)`);
  return channel;
}

export function listenStatement(channel: string): string {
  return `LISTEN ${pg.escapeIdentifier(channel)}`;
}

export function unlistenStatement(channel: string): string {
  return `UNLISTEN ${pg.escapeIdentifier(channel)}`;
}

/** pg_notify with the channel and payload as bind parameters, after the limits the server would enforce are checked here, with a clearer message. */
export function notifyCall(channel: unknown, payload: unknown): [text: string, values: [string, string]] {
  const name = checkedChannel(channel);
  const text = payload === undefined ? '' : payload;
  if (typeof text !== 'string') throw new InvalidQueryError('A notification payload is a string (JSON.stringify an object)');
  if (text.includes('\0')) throw new InvalidQueryError('A notification payload must not contain a NUL character');
  const bytes = Buffer.byteLength(text);
  if (bytes > MAX_PAYLOAD_BYTES) {
    throw new InvalidQueryError(
      `A notification payload is at most ${MAX_PAYLOAD_BYTES} bytes (PostgreSQL's limit); this one is ${bytes}: send a key (an id) and let listeners read the data from a table`,
    );
  }
  return ['SELECT pg_catalog.pg_notify($1, $2)', [name, text]];
}
