import { Logger } from '@nestjs/common';
import type pg from 'pg';
import { ShuttingDownError } from '../errors/connection.errors.js';
import { InvalidQueryError } from '../errors/query.errors.js';
import type { DatabasePool, ListenerStats } from '../pool/database-pool.js';
import { promiseTimeout } from '../utils/promise-timeout.js';
import { checkedChannel, listenStatement, unlistenStatement } from './channel-name.js';

/** A notification as the server delivered it. */
export interface Notification {
  channel: string;
  /** '' when NOTIFY sent none. */
  payload: string;
  /** The server process (backend pid) of the session that sent it. */
  processId: number;
}

/**
 * The listener connection was lost and is listening again. Notifications sent while it was down are
 * lost (PostgreSQL does not keep them for a session that is gone): re-read whatever state they
 * announce (reload the cache, rescan the job table).
 */
export interface ListenerReconnected {
  channel: string;
  /** From the loss to listening again. */
  downtimeMs: number;
}

export interface ListenOptions {
  /** Called after each reconnect: you may have missed notifications on this channel. A throw or rejection is logged, never fatal. */
  onReconnect?: (event: ListenerReconnected) => void | Promise<void>;
}

export type NotificationHandler = (notification: Notification) => void | Promise<void>;

/** What db.listen() resolves to, once the server is listening on the channel. */
export interface Subscription {
  readonly channel: string;
  /** Stops this handler; the channel is UNLISTENed when no handler is left on it. Idempotent. */
  unsubscribe(): Promise<void>;
}

interface Subscriber {
  handler: NotificationHandler;
  onReconnect?: ListenOptions['onReconnect'];
}

// Reconnect delays: the first attempt at once, then doubling from 100 ms up to 5 s, with jitter.
const FIRST_DELAY_MS = 100;
const MAX_DELAY_MS = 5_000;

type SocketHolder = { connection: { stream: { destroy(): void } } };

/**
 * One dedicated connection per module connection carrying every LISTEN channel of its DatabaseService.
 * Opened through the pool's own connect path (DatabasePool.openDedicatedConnection: credentials, host
 * list, TLS assertion) but outside the pool, so it never takes a slot from queries. When it is lost
 * (terminated, server restart, network) it is opened again with backoff and every channel LISTENed
 * again; each subscriber's onReconnect then says notifications may have been missed. Notifications
 * are only taken from the current connection, so none is delivered twice. A handler that throws or
 * rejects is logged and the listener goes on. Closed with the pool (module shutdown).
 */
export class NotificationListener {
  private readonly subscribers = new Map<string, Set<Subscriber>>();
  /** The connection notifications are taken from (set as soon as it is open, before its LISTENs). */
  private client?: pg.Client;
  /** Channels LISTENed on `client`. */
  private readonly listened = new Set<string>();
  /** Opening (first time) or reopening (after a loss) the connection. */
  private connecting?: Promise<pg.Client>;
  private state: ListenerStats['state'] = 'connecting';
  private reconnects = 0;
  private closed = false;
  private retry?: { timer: NodeJS.Timeout; resolve(): void };
  private readonly logger: Logger;

  constructor(private readonly owner: DatabasePool) {
    this.logger = new Logger(owner.config.name ? `SecureDatabase:${owner.config.name}` : 'SecureDatabase');
    owner.addCompanion(this, () => this.stats());
  }

  stats(): ListenerStats {
    return { state: this.state, channels: this.subscribers.size, reconnects: this.reconnects };
  }

  async listen(channel: string, handler: NotificationHandler, options: ListenOptions = {}): Promise<Subscription> {
    const name = checkedChannel(channel);
    if (typeof handler !== 'function') throw new InvalidQueryError('listen needs a handler function');
    if (options?.onReconnect !== undefined && typeof options.onReconnect !== 'function') throw new InvalidQueryError('onReconnect must be a function');
    if (this.closed || this.owner.closed) throw new ShuttingDownError();
    this.sessionPool(); // behind a transaction pooler without DATABASE_DIRECT_URL: refused before anything is kept
    const subscriber: Subscriber = { handler, onReconnect: options?.onReconnect };
    let set = this.subscribers.get(name);
    if (!set) this.subscribers.set(name, (set = new Set()));
    set.add(subscriber);
    try {
      await this.ensureListening(name);
    } catch (error) {
      this.remove(name, subscriber);
      throw error;
    }
    let active = true;
    return {
      channel: name,
      unsubscribe: async () => {
        if (!active) return;
        active = false;
        await this.unsubscribe(name, subscriber);
      },
    };
  }

  /** Ends the connection and stops reconnecting; subscriptions end. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.state = 'closed';
    if (this.retry) {
      clearTimeout(this.retry.timer);
      this.retry.resolve();
    }
    const client = this.client;
    this.client = undefined;
    this.subscribers.clear();
    if (client) await promiseTimeout(this.owner.config.timeouts.connectMs, client.end()).catch(() => (client as unknown as SocketHolder).connection.stream.destroy());
  }

  /** Behind a transaction pooler LISTEN needs DATABASE_DIRECT_URL: a pooled server connection is shared with other clients. */
  private sessionPool(): DatabasePool {
    return this.owner.sessionPool(
      'listen needs a server session of its own, which a transaction pooler does not give (notifications would reach whichever client holds the server connection; notify works through the pooler as it is)',
    );
  }

  private async ensureListening(channel: string): Promise<void> {
    for (;;) {
      const client = await this.connection();
      if (this.listened.has(channel)) return;
      if (!this.subscribers.has(channel)) return; // unsubscribed meanwhile
      try {
        await client.query(listenStatement(channel));
        if (client === this.client) {
          this.listened.add(channel);
          return;
        }
      } catch (error) {
        // The connection was lost meanwhile: the reconnect LISTENs every channel, this one included.
        if (client === this.client && !this.owner.isUnusable(client)) throw this.owner.mapError(error);
      }
      if (this.closed) throw new ShuttingDownError();
    }
  }

  private connection(): Promise<pg.Client> {
    if (this.closed) return Promise.reject(new ShuttingDownError());
    if (this.connecting) return this.connecting;
    if (this.client) return Promise.resolve(this.client);
    // The first connection: a failure is the caller's (listen rejects), not retried in the background.
    const first = (this.connecting = this.open().finally(() => {
      if (this.connecting === first) this.connecting = undefined;
    }));
    return first;
  }

  /** Opens a connection, makes it current and LISTENs every channel wanted now. */
  private async open(): Promise<pg.Client> {
    const client = await this.sessionPool().openDedicatedConnection();
    if (this.closed) {
      (client as unknown as SocketHolder).connection.stream.destroy();
      throw new ShuttingDownError();
    }
    client.on('notification', (message) => {
      if (client === this.client) this.deliver(message);
    });
    client.on('error', () => this.lost(client));
    client.on('end', () => this.lost(client));
    this.client = client;
    this.listened.clear();
    const channels = [...this.subscribers.keys()];
    if (channels.length > 0) {
      try {
        await client.query(channels.map(listenStatement).join('; '));
      } catch (error) {
        this.lost(client);
        throw this.owner.mapError(error);
      }
      for (const channel of channels) this.listened.add(channel);
    }
    if (client !== this.client) throw new ShuttingDownError(); // lost during its LISTENs
    this.state = 'listening';
    return client;
  }

  private lost(client: pg.Client): void {
    if (client !== this.client) return;
    this.client = undefined;
    this.listened.clear();
    (client as unknown as SocketHolder).connection.stream.destroy();
    if (this.closed || this.connecting) return; // open() in progress reports it, or its loop retries
    this.state = 'reconnecting';
    const lostAt = performance.now();
    this.logger.warn('The notification listener connection was lost: reconnecting (notifications sent meanwhile are lost)');
    const reconnecting = (this.connecting = this.reconnect(lostAt).finally(() => {
      if (this.connecting === reconnecting) this.connecting = undefined;
    }));
    reconnecting.catch(() => undefined);
  }

  private async reconnect(lostAt: number): Promise<pg.Client> {
    for (let attempt = 0; ; attempt++) {
      if (attempt > 0) await this.pause(Math.min(FIRST_DELAY_MS * 2 ** (attempt - 1), MAX_DELAY_MS) * (0.5 + Math.random()));
      if (this.closed) throw new ShuttingDownError();
      try {
        const client = await this.open();
        this.reconnects++;
        const downtimeMs = Math.round(performance.now() - lostAt);
        this.logger.log(`The notification listener reconnected after ${downtimeMs} ms and listens again on ${this.subscribers.size} channel(s)`);
        this.signalReconnected(downtimeMs);
        return client;
      } catch (error) {
        if (this.closed) throw error;
        this.logger.warn(`The notification listener could not reconnect yet (attempt ${attempt + 1}): ${this.owner.describe(error)}`);
      }
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.retry = undefined;
        resolve();
      }, ms);
      this.retry = { timer, resolve };
    });
  }

  private deliver(message: pg.Notification): void {
    const subscribers = this.subscribers.get(message.channel);
    if (!subscribers) return;
    const notification: Notification = { channel: message.channel, payload: message.payload ?? '', processId: message.processId };
    for (const { handler } of [...subscribers]) this.guarded('notification handler', () => handler(notification));
  }

  private signalReconnected(downtimeMs: number): void {
    for (const [channel, subscribers] of this.subscribers) {
      for (const { onReconnect } of [...subscribers]) if (onReconnect) this.guarded('onReconnect handler', () => onReconnect({ channel, downtimeMs }));
    }
  }

  /** Runs an app callback: a throw or a rejection is logged (without the payload), never fatal to the listener. */
  private guarded(what: string, call: () => void | Promise<void>): void {
    const report = (error: unknown) =>
      this.logger.error(
        `A ${what} failed; the listener goes on: ${this.owner.config.verboseErrors && error instanceof Error ? (error.stack ?? error.message) : error instanceof Error ? error.name : typeof error}`,
      );
    try {
      const result = call();
      if (result && typeof (result as Promise<void>).then === 'function') (result as Promise<void>).then(undefined, report);
    } catch (error) {
      report(error);
    }
  }

  private remove(channel: string, subscriber: Subscriber): boolean {
    const set = this.subscribers.get(channel);
    if (!set) return false;
    set.delete(subscriber);
    if (set.size > 0) return false;
    this.subscribers.delete(channel);
    return true;
  }

  private async unsubscribe(channel: string, subscriber: Subscriber): Promise<void> {
    if (!this.remove(channel, subscriber)) return;
    const client = this.client;
    if (!client || !this.listened.delete(channel)) return;
    try {
      await client.query(unlistenStatement(channel));
    } catch {
      // A lost connection took the LISTEN with it; the reconnect only LISTENs channels still wanted.
    }
  }
}
