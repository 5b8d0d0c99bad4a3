/** Prints a measured figure (the README's failure table quotes them) on the test run's output. */
export function reportFigure(scenario: string, figures: Record<string, unknown>): void {
  process.stdout.write(`[resilience] ${scenario}: ${JSON.stringify(figures)}\n`);
}

/** Milliseconds, rounded, for reports. */
export const ms = (value: number): number => Math.round(value);
