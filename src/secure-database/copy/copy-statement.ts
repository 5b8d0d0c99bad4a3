import pg from 'pg';
import { InvalidQueryError } from '../errors/query.errors.js';

/** A table for copyFrom: its name, or [schema, name]. Each part is one identifier, quoted as given (case kept). */
export type CopyTable = string | readonly [schema: string, table: string];

// NAMEDATALEN - 1: the server truncates longer identifiers (and would then copy into another table).
const MAX_IDENTIFIER_BYTES = 63;

function identifier(name: unknown, what: string): string {
  if (typeof name !== 'string' || name.length === 0) throw new InvalidQueryError(`copyFrom needs ${what} as a non-empty string`);
  if (name.includes('\0')) throw new InvalidQueryError(`${what} must not contain a NUL character`);
  if (Buffer.byteLength(name) > MAX_IDENTIFIER_BYTES) throw new InvalidQueryError(`${what} is longer than PostgreSQL's ${MAX_IDENTIFIER_BYTES}-byte identifier limit`);
  return pg.escapeIdentifier(name);
}

/** The quoted table name, and the table's last part as the server names it in a COPY error's context. */
export function quotedTable(table: CopyTable): string {
  if (typeof table === 'string') return identifier(table, 'the table name');
  if (Array.isArray(table) && table.length === 2) return `${identifier(table[0], 'the schema name')}.${identifier(table[1], 'the table name')}`;
  throw new InvalidQueryError('copyFrom takes the table as a name or as [schema, name]');
}

/** COPY … FROM STDIN for `table` and `columns`, every name quoted as an identifier. */
export function copyFromStatement(table: CopyTable, columns: readonly string[]): string {
  if (!Array.isArray(columns) || columns.length === 0) throw new InvalidQueryError('copyFrom needs the column names, in the order of each row’s values');
  const names = columns.map((column) => identifier(column, 'each column name'));
  if (new Set(columns).size !== columns.length) throw new InvalidQueryError('copyFrom was given a column name twice');
  return `COPY ${quotedTable(table)} (${names.join(', ')}) FROM STDIN`;
}

/** COPY (query) TO STDOUT. COPY takes no bind parameters: a query with values is refused, never inlined. */
export function copyToStatement(text: string, values: readonly unknown[] | undefined): string {
  if (values !== undefined && values.length > 0) {
    throw new InvalidQueryError(
      'COPY cannot take bind parameters, and the module never puts values into SQL text: copy a query without values (filter with a view, or a table filled in the same transaction), or read with stream()',
    );
  }
  if (text.includes('\0')) throw new InvalidQueryError('SQL text must not contain a NUL character');
  const query = text.trim().replace(/;$/, '');
  // COPY goes over the simple protocol, which would run a second statement after a semicolon.
  if (query.includes(';')) throw new InvalidQueryError("copyTo takes one query without ';' (COPY runs over the simple protocol, which would run whatever follows it); in a literal write chr(59)");
  return `COPY (${query}) TO STDOUT`;
}
