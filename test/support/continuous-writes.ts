import { setTimeout as sleep } from 'node:timers/promises';
import { type DatabaseService, SecureDatabaseError, sql } from '../../src/index.js';

export interface WriteAttempt {
  id: number;
  startedAt: number;
  endedAt: number;
  /** The error code when the write failed. */
  code?: string;
}

export interface ContinuousWrites {
  /** Every finished attempt, in finishing order. */
  readonly attempts: WriteAttempt[];
  /** Resolves with the end of the first successful write that started after `at` (performance.now()), or undefined after `timeoutMs`. */
  resumedAfter(at: number, timeoutMs: number): Promise<number | undefined>;
  /** Resolves once `count` writes started after `at` have succeeded; rejects after `timeoutMs`. */
  succeededAfter(at: number, count: number, timeoutMs: number): Promise<void>;
  /** Stops the writers; false when one of them was still stuck after 10 s. */
  stop(): Promise<boolean>;
}

// Ids are unique in the process: several scenarios can write into one table.
let nextId = 1;

/**
 * `writers` callers inserting (id, writer) into `table` one row at a time, as fast as the server
 * takes them (a short pause after a failure, as a retrying client would make): each attempt records
 * when it started and ended and how it failed, for "acknowledged writes lost" and "time to the first
 * successful write" after a fault.
 */
export function startContinuousWrites(db: DatabaseService, writers: number, table = 'writes'): ContinuousWrites {
  const attempts: WriteAttempt[] = [];
  let stopping = false;
  const writer = async (n: number) => {
    while (!stopping) {
      const attempt: WriteAttempt = { id: nextId++, startedAt: performance.now(), endedAt: 0 };
      try {
        await db.execute(sql`INSERT INTO ${sql.identifier(table)} (id, writer) VALUES (${attempt.id}, ${n})`);
      } catch (error) {
        attempt.code = error instanceof SecureDatabaseError ? error.code : String(error);
      }
      attempt.endedAt = performance.now();
      attempts.push(attempt);
      await sleep(attempt.code ? 20 : 2);
    }
  };
  const running = Array.from({ length: writers }, (_, n) => writer(n));
  const poll = async <T>(timeoutMs: number, check: () => T | undefined): Promise<T | undefined> => {
    for (const deadline = performance.now() + timeoutMs; performance.now() < deadline; await sleep(25)) {
      const value = check();
      if (value !== undefined) return value;
    }
    return undefined;
  };
  return {
    attempts,
    resumedAfter: (at, timeoutMs) => poll(timeoutMs, () => attempts.find((a) => !a.code && a.startedAt > at)?.endedAt),
    async succeededAfter(at, count, timeoutMs) {
      const done = await poll(timeoutMs, () => (attempts.filter((a) => !a.code && a.startedAt > at).length >= count ? true : undefined));
      if (!done) throw new Error(`fewer than ${count} writes succeeded within ${timeoutMs} ms`);
    },
    async stop() {
      stopping = true;
      // An unref'd timer: the race's loser must not keep the jest worker alive.
      return Promise.race([Promise.all(running).then(() => true), sleep(10_000, undefined, { ref: false }).then(() => false)]);
    },
  };
}

/** The figures of one fault: `onServer` holds the ids the (new) primary has after it. */
export function writeFigures(attempts: WriteAttempt[], faultAt: number, resumedAt: number | undefined, onServer: Set<number>) {
  const acknowledged = attempts.filter((a) => !a.code);
  const failed = attempts.filter((a) => a.code);
  const ends = acknowledged.map((a) => a.endedAt).sort((x, y) => x - y);
  const gaps = ends.slice(1).map((end, i) => end - ends[i]);
  return {
    acknowledgedWrites: acknowledged.length,
    lostAcknowledgedWrites: acknowledged.filter((a) => !onServer.has(a.id)).length,
    failedWrites: failed.length,
    failedCodes: [...new Set(failed.map((a) => a.code!))].sort(),
    resumedAfterFaultMs: resumedAt === undefined ? null : Math.round(resumedAt - faultAt),
    /** The longest time without a write being acknowledged. */
    longestWriteGapMs: Math.round(Math.max(0, ...gaps)),
    slowestCallMs: Math.round(Math.max(...attempts.map((a) => a.endedAt - a.startedAt))),
  };
}
