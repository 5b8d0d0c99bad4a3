import pg from 'pg';
import { Int8OutOfRangeError } from '../errors/query.errors.js';

/** How int8 (bigint, count(*)) values arrive: pg's default `string`, a range-checked `number`, or `bigint`. */
export type Int8Mode = 'string' | 'number' | 'bigint';
/** How numeric (decimal) values arrive: pg's default `string`, or `number` (parseFloat: may round). */
export type NumericMode = 'string' | 'number';

export const INT8_MODES: readonly Int8Mode[] = ['string', 'number', 'bigint'];
export const NUMERIC_MODES: readonly NumericMode[] = ['string', 'number'];

// pg_type OIDs (stable across PostgreSQL versions).
const INT8 = 20;
const INT8_ARRAY = 1016;
const NUMERIC = 1700;
const NUMERIC_ARRAY = 1231;

type Parser = (text: string) => unknown;
type Nested = null | string | Nested[];

function int8AsNumber(text: string): number {
  const value = Number(text);
  // Beyond 2^53 a number silently rounds (9007199254740993 reads back as ...992): refuse instead.
  if (!Number.isSafeInteger(value)) throw new Int8OutOfRangeError();
  return value;
}

const SCALAR: Record<string, Parser> = {
  'int8:number': int8AsNumber,
  'int8:bigint': (text) => BigInt(text),
  'numeric:number': (text) => Number.parseFloat(text),
};

/** pg's own array parser (text elements, NULLs, nesting), then each element through `scalar`. */
function arrayOf(oid: number, scalar: Parser): Parser {
  const parseText = pg.types.getTypeParser(oid, 'text') as (text: string) => Nested[];
  const convert = (entry: Nested): unknown => (entry === null ? null : Array.isArray(entry) ? entry.map(convert) : scalar(entry));
  return (text) => parseText(text).map(convert);
}

/**
 * The `types` of the module's pg client config: int8 and numeric (and their arrays) as the options
 * ask, everything else from pg's registry. Per pool, unlike pg.types.setTypeParser, which would change
 * every pg client in the process (another module's, a raw pg.Pool's). Undefined when both are pg's
 * defaults, so the client config stays as pg would have it.
 */
export function typeParsers(int8: Int8Mode, numeric: NumericMode): pg.CustomTypesConfig | undefined {
  if (int8 === 'string' && numeric === 'string') return undefined;
  const own = new Map<number, Parser>();
  const int8Parser = SCALAR[`int8:${int8}`];
  if (int8Parser) own.set(INT8, int8Parser).set(INT8_ARRAY, arrayOf(INT8_ARRAY, int8Parser));
  const numericParser = SCALAR[`numeric:${numeric}`];
  if (numericParser) own.set(NUMERIC, numericParser).set(NUMERIC_ARRAY, arrayOf(NUMERIC_ARRAY, numericParser));
  return {
    getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
      (format ?? 'text') === 'text' && own.has(oid) ? own.get(oid) : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
  };
}
