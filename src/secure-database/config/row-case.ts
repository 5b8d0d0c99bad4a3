import { RowCaseCollisionError } from '../errors/query.errors.js';

/** DATABASE_ROW_CASE: `none` keeps the server's column names (the default); `camel` maps created_at to createdAt. */
export type RowCase = 'none' | 'camel';
export const ROW_CASES: readonly RowCase[] = ['none', 'camel'];

// Clients of pools with rowCase camel (tagged by the pool as it builds them): the query helpers and
// streams rename on them; raw pg use of the same pool (@InjectPool) and the library's own queries do not.
const camelClients = new WeakSet<object>();

export function useCamelCaseRows(client: object): void {
  camelClients.add(client);
}

export function camelCaseRowsOn(client: object): boolean {
  return camelClients.has(client);
}

/** created_at -> createdAt, user_id_2 -> userId2; leading underscores and names with capitals ("createdAt") stay. */
export function camelCase(name: string): string {
  return name.replace(/(?<=[^_])_+([a-z0-9])/g, (_, next: string) => next.toUpperCase());
}

/**
 * Renames a RowDescription's fields in place, before pg builds its row template and parsers from them:
 * each name is mapped once per result, not once per row. Two different names that map to the same key
 * (`a_b` and `aB`) would make one column overwrite the other, so that is a RowCaseCollisionError.
 */
export function camelCaseFields(fields: Array<{ name: string }>): void {
  const seen = new Map<string, { index: number; original: string }>();
  for (let i = 0; i < fields.length; i++) {
    const original = fields[i]!.name;
    const mapped = camelCase(original);
    const earlier = seen.get(mapped);
    if (earlier && earlier.original !== original) throw new RowCaseCollisionError(earlier.index + 1, i + 1);
    seen.set(mapped, { index: i, original });
    fields[i]!.name = mapped;
  }
}
