import { describe, expect, it } from '@jest/globals';
import { changesSession, statementFacts } from './statement-facts.js';

describe('statement facts', () => {
  it.each([
    'BEGIN',
    'begin isolation level serializable',
    'START TRANSACTION',
    'COMMIT',
    '/* x */ commit and chain',
    'END',
    'ABORT',
    'ROLLBACK',
    'ROLLBACK PREPARED $1',
    'COMMIT PREPARED $1',
    "PREPARE TRANSACTION 'x'",
  ])('%s is transaction control', (text) => {
    expect(statementFacts(text)).toMatchObject({ transactionControl: true, shareable: false });
  });

  it.each(['ROLLBACK TO SAVEPOINT a', 'ROLLBACK TO a', 'rollback work to savepoint a', 'SAVEPOINT a', 'RELEASE SAVEPOINT a', 'SELECT 1'])(
    '%s is not transaction control',
    (text) => expect(statementFacts(text).transactionControl).toBe(false),
  );

  it.each([
    'SELECT 1',
    'select * from t where id = $1',
    "INSERT INTO t (x) VALUES ('into')",
    'UPDATE t SET x = 1',
    'DELETE FROM t',
    'WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a',
    'VALUES (1)',
    'TABLE t',
    'SHOW statement_timeout',
    'SELECT pg_advisory_xact_lock(1)',
    "SELECT set_config('app.x', $1, true)",
  ])('%s may share a connection and leaves no session state', (text) => {
    expect(statementFacts(text)).toMatchObject({ shareable: true, sessionText: false });
    expect(changesSession(text, text.trim().split(/\s/)[0].toUpperCase() === 'WITH' ? 'INSERT' : 'SELECT')).toBe(false);
  });

  // The command tag of these is SELECT (or looks plain): only the text shows what they leave behind.
  it.each([
    'SELECT * INTO TEMP prices FROM products',
    'SELECT 1 INTO prices_copy',
    'CREATE TEMP TABLE prices AS SELECT 1',
    'CREATE TABLE pg_temp.prices AS SELECT 1',
    'SELECT pg_advisory_lock(1)',
    'SELECT pg_try_advisory_lock_shared(1)',
    "SELECT set_config('role', 'admin', false)",
    'SELECT set_config($1, $2, $3)',
    'EXECUTE q',
  ])('%s changes the session although its tag says SELECT', (text) => {
    expect(statementFacts(text)).toMatchObject({ shareable: false, sessionText: true });
    expect(changesSession(text, 'SELECT')).toBe(true);
  });

  it.each(['SET', 'RESET', 'DISCARD', 'CREATE', 'DECLARE', 'PREPARE', 'LISTEN', 'LOAD', 'DO', 'CALL', 'EXPLAIN', 'ALTER', 'ROLLBACK', 'COMMIT'])(
    'tag %s: the session is reset whatever the text',
    (tag) => expect(changesSession('SELECT 1', tag)).toBe(true),
  );

  it.each([
    ['INSERT INTO t VALUES (1) RETURNING *', true],
    ['update t set x = 1 returning x', true],
    ['DELETE FROM t RETURNING *', true],
    ['MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE', true],
    ['WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d', true],
    ['SELECT * FROM t', false],
    ['WITH a AS (SELECT last_update FROM t) SELECT * FROM a', false],
  ])('%s is a write: %s', (text, write) => expect(statementFacts(text).write).toBe(write));
});
