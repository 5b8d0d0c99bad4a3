import { describe, expect, it } from '@jest/globals';
import { leadingWords, sessionStatementReason } from './session-statements.js';

describe('statements a transaction pooler cannot take', () => {
  it('reads the first keywords past whitespace and comments, nested ones included', () => {
    expect(leadingWords('  -- note\n /* a /* nested */ b */ set local x = 1', 3)).toEqual(['SET', 'LOCAL', 'X']);
    expect(leadingWords('(SELECT 1)', 2)).toEqual([]);
  });

  it.each([
    'SET search_path = app',
    'set session authorization bob',
    'SET ROLE admin',
    'SET TIME ZONE UTC',
    '/* hide */ RESET ALL',
    'DISCARD ALL',
    'LISTEN jobs',
    'UNLISTEN *',
    'PREPARE q AS SELECT 1',
    'DEALLOCATE ALL',
    'LOAD \'auto_explain\'',
    'DECLARE c CURSOR WITH HOLD FOR SELECT 1',
    'CREATE TEMP TABLE t (x int)',
    'CREATE LOCAL TEMPORARY TABLE t (x int)',
    'CREATE TEMP VIEW prices AS SELECT 1',
    'CREATE TEMP SEQUENCE s',
    'CREATE TABLE pg_temp.prices (x int)',
    'CREATE TABLE pg_temp.prices AS SELECT 1',
    'CREATE VIEW pg_temp.prices AS SELECT 1',
    'SELECT * INTO TEMP prices FROM products',
    'SELECT * INTO LOCAL TEMPORARY TABLE prices FROM products',
    'select * into pg_temp.prices from products',
    'WITH p AS (SELECT 1 AS x) SELECT x INTO TEMPORARY prices FROM p',
    'SELECT pg_advisory_lock(42)',
    'SELECT pg_catalog.pg_try_advisory_lock_shared(42)',
    "SELECT set_config('app.tenant_id', '42', false)",
    'SELECT pg_catalog.set_config($1, $2, $3)',
  ])('refuses %s', (statement) => {
    expect(sessionStatementReason(statement)).toMatch(/session|pooler/);
  });

  it.each([
    'SELECT 1',
    'SET LOCAL statement_timeout = 100',
    'SET TRANSACTION ISOLATION LEVEL SERIALIZABLE',
    'SET CONSTRAINTS ALL DEFERRED',
    'DECLARE c CURSOR FOR SELECT 1',
    'CREATE TEMP TABLE t (x int) ON COMMIT DROP',
    'CREATE TABLE settings (x int)',
    "INSERT INTO notes (body) VALUES ('SET search_path')",
    'WITH x AS (SELECT 1) SELECT * FROM x',
    'SELECT * INTO prices_copy FROM products',
    "WITH ins AS (INSERT INTO temp_readings (x) VALUES (1) RETURNING x) SELECT x FROM ins",
    'SELECT pg_advisory_xact_lock(42)',
    "SELECT set_config('app.tenant_id', '42', true)",
    "SELECT pg_catalog.set_config('app.x', lower(concat('a', 'b')), TRUE)",
  ])('allows %s', (statement) => {
    expect(sessionStatementReason(statement)).toBeUndefined();
  });
});
