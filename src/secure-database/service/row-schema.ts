import type { StandardSchemaV1 } from '@standard-schema/spec';
import { InvalidQueryError, RowValidationError } from '../errors/query.errors.js';

/** Options that validate each row with a Standard Schema validator (zod, valibot, arktype …). */
export interface RowOptions {
  /**
   * Every row is validated with it, and the helper resolves to the schema's output (so a schema that
   * coerces or renames does so). A row that does not match is a RowValidationError (DB_ROW_INVALID).
   */
  schema?: StandardSchemaV1;
}

/** The rows a schema turns the result into. */
export type SchemaOutput<S extends StandardSchemaV1> = StandardSchemaV1.InferOutput<S>;

/** The schema of a call's options, checked to be a Standard Schema validator. */
export function rowSchemaOf(options: RowOptions): StandardSchemaV1 | undefined {
  const { schema } = options;
  if (schema === undefined) return undefined;
  const standard = (schema as Partial<StandardSchemaV1> | null)?.['~standard'];
  if (typeof standard?.validate !== 'function' || standard.version !== 1) {
    throw new InvalidQueryError('schema must be a Standard Schema validator (zod, valibot, arktype …: an object with a "~standard" property, version 1)');
  }
  return schema;
}

/** One row through the schema: its output, or a RowValidationError that names no value outside development. */
export async function validateRow(schema: StandardSchemaV1, row: unknown, index: number, verbose: boolean): Promise<unknown> {
  let result = schema['~standard'].validate(row);
  if (result instanceof Promise) result = await result;
  if (result.issues === undefined) return result.value;
  throw new RowValidationError(index, result.issues, verbose);
}

/** Every row through the schema, in order (synchronous validators pay no promise per row). */
export async function validateRows(schema: StandardSchemaV1, rows: unknown[], verbose: boolean): Promise<unknown[]> {
  const out = new Array<unknown>(rows.length);
  for (let i = 0; i < rows.length; i++) {
    const result = schema['~standard'].validate(rows[i]);
    if (result instanceof Promise) out[i] = await validateRow(schema, rows[i], i, verbose);
    else if (result.issues === undefined) out[i] = result.value;
    else throw new RowValidationError(i, result.issues, verbose);
  }
  return out;
}
