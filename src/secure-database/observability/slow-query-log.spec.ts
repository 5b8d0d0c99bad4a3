import { describe, expect, it } from '@jest/globals';
import type { QueryEvent } from './query-event.js';
import { SLOW_QUERY_TEXT_LIMIT, SlowQueryLog } from './slow-query-log.js';

function event(durationMs: number, text = 'SELECT pg_sleep($1)'): QueryEvent {
  return {
    connection: 'default',
    text,
    fingerprint: '0123456789abcdef',
    operation: 'SELECT',
    durationMs,
    rows: 1,
    outcome: 'ok',
    pipelined: false,
    cached: false,
    inTransaction: false,
    replica: false,
    stream: false,
  };
}

describe('slow-query log', () => {
  it('logs at or over the threshold only, at most N lines per window, and reports the lines left out in the next one', () => {
    const lines: string[] = [];
    let now = 0;
    const log = new SlowQueryLog(100, { warn: (line) => lines.push(line) }, false, () => now, 3, 1000);
    log.record(event(99), 'select pg_sleep ( ? )');
    expect(lines).toEqual([]);
    for (let i = 0; i < 7; i++) log.record(event(100 + i), 'select pg_sleep ( ? )');
    expect(lines).toHaveLength(3);
    expect(lines[0]).toBe('Slow query: 100 ms (threshold 100 ms), SELECT, 1 rows, fingerprint 0123456789abcdef: select pg_sleep ( ? )');
    now = 999;
    log.record(event(200), 'x');
    expect(lines).toHaveLength(3);
    now = 1000;
    log.record(event(200), 'select pg_sleep ( ? )');
    expect(lines).toHaveLength(4);
    expect(lines[3]).toContain('(5 more slow queries were not logged: at most 3 lines per 1 s)');
  });

  it('prints the normalised text cut to the limit in production, the text as sent in development', () => {
    const long = `SELECT ${'a, '.repeat(1000)}b`;
    const production: string[] = [];
    new SlowQueryLog(1, { warn: (line) => production.push(line) }, false).record(event(5, long), long.toLowerCase());
    expect(production[0]).toContain(`${long.toLowerCase().slice(0, SLOW_QUERY_TEXT_LIMIT)}… [${long.length - SLOW_QUERY_TEXT_LIMIT} more characters]`);
    const development: string[] = [];
    new SlowQueryLog(1, { warn: (line) => development.push(line) }, true).record(event(5, "SELECT 'literal'"), 'select ?');
    expect(development[0]).toMatch(/: SELECT 'literal'$/);
  });
});
