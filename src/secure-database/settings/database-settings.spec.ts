import { describe, expect, it } from '@jest/globals';
import { InvalidQueryError } from '../errors/query.errors.js';
import { SettingsInUse, mergeSettings, resolveSettings, setConfigStatement } from './database-settings.js';

const refusal = (settings: unknown): string => {
  try {
    resolveSettings(settings);
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidQueryError);
    return (error as Error).message;
  }
  throw new Error('accepted');
};

describe('settings given per call', () => {
  it('custom prefix.name settings only, lower-cased as PostgreSQL spells them; values as text', () => {
    expect(resolveSettings({ 'app.tenant_id': 42, 'App.Region': 'eu', 'request.jwt.claims': '{"sub":"1"}', 'app.flag': true, 'app.big': 10n })).toEqual(
      new Map([
        ['app.tenant_id', '42'],
        ['app.region', 'eu'],
        ['request.jwt.claims', '{"sub":"1"}'],
        ['app.flag', 'true'],
        ['app.big', '10'],
      ]),
    );
    expect(resolveSettings({})).toBeUndefined();
    expect(resolveSettings(undefined)).toBeUndefined();
  });

  it.each(['role', 'session_authorization', 'search_path', 'statement_timeout', 'app', 'app.', '.x', 'app.tenant-id', 'app.tenant id', "app.x'; --", '1app.x'])(
    'refuses %j, saying what a setting name must be',
    (name) => {
      expect(refusal({ [name]: '1' })).toMatch(/is not a custom setting name: give prefix\.name/);
    },
  );

  it("refuses an extension's settings", () => {
    expect(refusal({ 'plpgsql.check_asserts': 'off' })).toMatch(/belongs to a PostgreSQL extension/);
    expect(refusal({ 'auto_explain.log_min_duration': '0' })).toMatch(/belongs to a PostgreSQL extension/);
  });

  it('refuses values that are not text-like without echoing them', () => {
    expect(refusal({ 'app.tenant_id': undefined })).toBe(
      'settings: the value of "app.tenant_id" is undefined: give a string, number, bigint or boolean (leave the name out for no value; a statement without it sees it empty)',
    );
    expect(refusal({ 'app.tenant_id': null })).toMatch(/is null/);
    expect(refusal({ 'app.claims': { secret: 'canary-value' } })).not.toMatch(/canary/);
    expect(refusal({ 'app.x': 'a\0b' })).toMatch(/NUL/);
    expect(refusal('app.tenant_id=1')).toMatch(/must be a plain object/);
    expect(refusal(new Map([['app.x', '1']]))).toMatch(/must be a plain object/);
  });

  it('merges inner values over outer ones', () => {
    const outer = resolveSettings({ 'app.a': 1, 'app.b': 1 });
    const inner = resolveSettings({ 'app.b': 2 });
    expect(mergeSettings(outer, inner)).toEqual(new Map([['app.a', '1'], ['app.b', '2']]));
    expect(mergeSettings(undefined, inner)).toBe(inner);
    expect(mergeSettings(outer, undefined)).toBe(outer);
  });

  it('set_config statements bind names and values; the text depends only on how many', () => {
    expect(setConfigStatement(resolveSettings({ 'app.a': "x'); DROP TABLE t; --", 'app.b': 2 })!)).toEqual({
      text: 'SELECT pg_catalog.set_config($1, $2, true), pg_catalog.set_config($3, $4, true)',
      values: ['app.a', "x'); DROP TABLE t; --", 'app.b', '2'],
    });
    expect(setConfigStatement([['app.a', '1']], false).text).toBe('SELECT pg_catalog.set_config($1, $2, false)');
  });

  it('names in use are set on every later statement, empty when not given', () => {
    const inUse = new SettingsInUse();
    expect(inUse.statement(undefined)).toBeUndefined();
    inUse.remember(resolveSettings({ 'app.tenant_id': 7 }));
    expect(inUse.statement(undefined)).toEqual({ text: 'SELECT pg_catalog.set_config($1, $2, true)', values: ['app.tenant_id', ''] });
    expect(inUse.statement(resolveSettings({ 'app.region': 'eu' }))!.values).toEqual(['app.tenant_id', '', 'app.region', 'eu']);
    for (let i = 0; i < 63; i++) inUse.remember(resolveSettings({ [`app.n${i}`]: 1 }));
    expect(() => inUse.remember(resolveSettings({ 'app.one_too_many': 1 }))).toThrow(/more than 64 different setting names/);
  });
});
