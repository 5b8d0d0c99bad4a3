import { appendFileSync } from 'node:fs';

/** Set by `npm run resilience` (record-figures.ts): the JSON-lines file this run's figures are kept in. */
export const RESULTS_FILE_ENV = 'RESILIENCE_RESULTS_FILE';

/** One measured figure as kept in a results file. */
export interface FigureRecord {
  scenario: string;
  figures: Record<string, unknown>;
}

/**
 * Prints a measured figure on the test run's output and, under `npm run resilience`, appends it to
 * the run's results file, from which the README's "Failure behaviour" table is generated.
 */
export function reportFigure(scenario: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[resilience] ${scenario}: ${JSON.stringify(figures)}\n`);
  const file = process.env[RESULTS_FILE_ENV];
  // One write per line, appended: jest's workers share the file.
  if (file) appendFileSync(file, `${JSON.stringify({ scenario, figures } satisfies FigureRecord)}\n`);
}

/** Milliseconds, rounded, for reports. */
export const ms = (value: number): number => Math.round(value);
