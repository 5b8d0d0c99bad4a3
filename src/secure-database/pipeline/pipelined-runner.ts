import type pg from 'pg';
import { ShuttingDownError } from '../errors/connection.errors.js';
import type { DatabasePool, PipelineStats } from '../pool/database-pool.js';
import { cancelledError } from '../service/cancellation.js';
import { type ResultShape, runCached, runStatement } from '../service/queryable.js';
import type { StatementCache } from '../service/statement-cache.js';
import { changesSession, statementFacts } from '../service/statement-facts.js';

/** A pooled connection running autocommit statements for several callers at once (pg's pipeline mode). */
interface SharedConnection {
  client: pg.PoolClient;
  /** When each statement in flight on it was sent, oldest first: answers come back in that order. */
  sent: number[];
  /** Writes are held back until the end of this tick, so the statements joining now leave in one write. */
  corked: boolean;
}

type SocketHolder = { connection: { stream: { cork(): void; uncork(): void } } };

// Statements in flight on one connection at most.
const MAX_DEPTH = 16;
// A statement never joins a connection whose oldest statement has run longer than this: one slow
// query must not hold up fast ones queued behind it (head-of-line blocking).
const HEAD_AGE_LIMIT_MS = 5;

// pg checks the flag each time it sends; flipped only while the connection has nothing in flight.
function setPipelineMode(client: pg.PoolClient, on: boolean): void {
  (client as pg.PoolClient & { pipeline: boolean }).pipeline = on;
}

/**
 * Autocommit statements of DatabaseService that adapt to load. With a connection free (or room to open
 * one) a statement takes it alone, exactly as without pipelining. When every connection is busy and
 * nobody waits for a connection of their own (a transaction, a stream), the statement joins the least
 * busy connection already running autocommit statements and is pipelined behind them: no wait for a
 * free connection, fewer round trips. Each statement keeps its own Sync, so an error fails that
 * statement alone; a connection that breaks fails exactly the statements in flight on it. The pool
 * stays the only source of connections (TLS assertion, failover, lifetime and drain all apply); a
 * connection goes back to it as soon as its last statement is answered, so waiters get it.
 * Only plain reads and writes share a connection (statement-facts.ts): never transaction control (a
 * BEGIN would capture the statements behind it), nor anything that may leave session state.
 */
export class PipelinedRunner {
  private readonly shared = new Set<SharedConnection>();
  /** This runner's callers waiting in the pool's queue (the rest of the queue wants exclusive connections). */
  private acquiring = 0;
  /** Callers waiting for room on a shared connection (or a connection of their own), first come first served. */
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly db: DatabasePool) {}

  stats(): PipelineStats {
    let pipelined = 0;
    let depth = 0;
    for (const connection of this.shared) {
      pipelined += connection.sent.length;
      depth = Math.max(depth, connection.sent.length);
    }
    return { sharedConnections: this.shared.size, pipelined, depth };
  }

  async run(
    text: string,
    values: readonly unknown[] | undefined,
    shape: ResultShape,
    statements: StatementCache,
    resetSession: (client: pg.PoolClient) => Promise<void>,
  ): Promise<pg.QueryResult> {
    if (!statementFacts(text).shareable) return this.runAlone(await this.db.acquire(), text, values, shape, resetSession);
    // New work is refused once the drain began; a caller already waiting still gets to join.
    if (this.db.closed) throw new ShuttingDownError();
    // At most one request to the pool per caller, however often it is woken; dropped if it joins instead.
    let requested: Promise<pg.PoolClient> | undefined;
    for (let woken = false; ; woken = true) {
      // Callers already waiting go first: a newcomer does not take the room a woken one was woken for.
      const joined = woken || this.waiters.length === 0 ? this.joinable() : undefined;
      if (joined) {
        this.drop(requested);
        return this.send(joined, text, values, shape, statements);
      }
      const { pool } = this.db;
      // A connection free for this caller (the ordinary case at low load), or a waiter for a connection
      // of its own ahead in the pool's queue (it gets the next free one: no racing it): just wait for one.
      const plain = pool.idleCount > pool.waitingCount || pool.waitingCount > this.acquiring;
      requested ??= this.request();
      const room = plain ? undefined : this.waitForRoom();
      const client = await (room ? Promise.race([requested, room.promise]) : requested);
      room?.cancel();
      if (client) return this.send(this.share(client), text, values, shape, statements);
    }
  }

  /** The least busy shared connection a statement may join now, if any. */
  private joinable(): SharedConnection | undefined {
    if (this.shared.size === 0) return undefined;
    const { pool } = this.db;
    // A free connection nobody has claimed yet (pg-pool hands idle ones over on the next tick), or
    // someone waiting for a connection of their own: no joining (they get the next free one).
    if (pool.idleCount > pool.waitingCount || pool.waitingCount > this.acquiring) return undefined;
    const now = performance.now();
    let best: SharedConnection | undefined;
    for (const connection of this.shared) {
      const depth = connection.sent.length;
      if (depth >= MAX_DEPTH || now - connection.sent[0] > HEAD_AGE_LIMIT_MS) continue;
      if (!best || depth < best.sent.length) best = connection;
    }
    return best;
  }

  private request(): Promise<pg.PoolClient> {
    this.acquiring++;
    return this.db.acquire().finally(() => this.acquiring--);
  }

  /** A connection asked for but no longer needed goes straight back to the pool when it arrives. */
  private drop(requested: Promise<pg.PoolClient> | undefined): void {
    requested?.then((client) => this.db.release(client), () => undefined);
  }

  /** Resolves (with null) when this caller's turn comes to try joining again; FIFO, one waiter per freed slot. */
  private waitForRoom(): { promise: Promise<null>; cancel(): void } {
    let wake!: () => void;
    const promise = new Promise<null>((resolve) => (wake = () => resolve(null)));
    this.waiters.push(wake);
    return {
      promise,
      cancel: () => {
        const index = this.waiters.indexOf(wake);
        if (index !== -1) this.waiters.splice(index, 1);
      },
    };
  }

  private wake(count: number): void {
    for (let i = 0; i < count && this.waiters.length > 0; i++) this.waiters.shift()!();
  }

  private share(client: pg.PoolClient): SharedConnection {
    setPipelineMode(client, true);
    const connection: SharedConnection = { client, sent: [], corked: false };
    this.shared.add(connection);
    queueMicrotask(() => this.wake(MAX_DEPTH - 1)); // after the owner's statement is counted
    return connection;
  }

  private async send(
    connection: SharedConnection,
    text: string,
    values: readonly unknown[] | undefined,
    shape: ResultShape,
    statements: StatementCache,
  ): Promise<pg.QueryResult> {
    // Its caller gave up (shape.signal) while it waited for a connection or room on one: nothing is sent.
    if (shape.signal?.aborted) {
      if (connection.sent.length === 0) this.giveBack(connection);
      throw cancelledError();
    }
    // For query events: pipelined means sent behind other callers' statements still in flight on this connection.
    shape.pipelined = connection.sent.length > 0;
    connection.sent.push(performance.now());
    // pg writes each statement as soon as it is queued: one system call each, the largest client cost
    // of a deep pipeline. Corking until the tick ends sends what joined meanwhile together.
    if (!connection.corked) {
      const { stream } = (connection.client as unknown as SocketHolder).connection;
      connection.corked = true;
      stream.cork();
      process.nextTick(() => {
        connection.corked = false;
        stream.uncork();
      });
    }
    try {
      const result = await runCached(connection.client, statements, text, values, shape);
      // Cannot happen for a shareable statement; if it ever does, nobody joins this connection again
      // and it is destroyed when the last statement in flight on it is answered.
      if (changesSession(text, result.command) || connection.client.getTransactionStatus?.() !== 'I') this.retire(connection);
      return result;
    } catch (error) {
      this.db.discardIfBroken(connection.client, error);
      if (this.db.isUnusable(connection.client)) this.shared.delete(connection); // nobody joins it again
      if (connection.client.getTransactionStatus?.() !== 'I') this.retire(connection);
      throw this.db.mapError(error);
    } finally {
      connection.sent.shift();
      if (connection.sent.length === 0) this.giveBack(connection);
      else if (this.shared.has(connection)) this.wake(1); // a slot came free on it
    }
  }

  private retire(connection: SharedConnection): void {
    this.db.markUnusable(connection.client);
    this.shared.delete(connection);
  }

  private giveBack(connection: SharedConnection): void {
    this.shared.delete(connection);
    setPipelineMode(connection.client, false);
    this.db.release(connection.client);
  }

  private async runAlone(
    client: pg.PoolClient,
    text: string,
    values: readonly unknown[] | undefined,
    shape: ResultShape,
    resetSession: (client: pg.PoolClient) => Promise<void>,
  ): Promise<pg.QueryResult> {
    try {
      if (shape.signal?.aborted) throw cancelledError(); // gave up while waiting: nothing sent
      const result = await runStatement(client, text, values, shape);
      if (changesSession(text, result.command)) await resetSession(client);
      return result;
    } catch (error) {
      this.db.discardIfBroken(client, error);
      throw this.db.mapError(error);
    } finally {
      this.db.release(client);
    }
  }
}
