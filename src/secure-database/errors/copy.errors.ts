import { InvalidInputError } from './query.errors.js';

/**
 * A row of copyFrom was refused: the server could not read a value for its column's type (SQLSTATE
 * class 22, e.g. 22P04 bad copy file format, 22P02 invalid text), or the module could not encode it (a
 * NUL character, an invalid Date). `row` is its 1-based position in the rows given; the message never
 * quotes a value (in development the driver's message, which may, is appended). Nothing of that COPY
 * is kept. A 400 through the exception filter, like every bad value.
 */
export class CopyDataError extends InvalidInputError {
  constructor(
    readonly row: number | undefined,
    message: string,
    options: { cause?: unknown; sqlstate?: string } = {},
  ) {
    super(message, options);
  }
}
