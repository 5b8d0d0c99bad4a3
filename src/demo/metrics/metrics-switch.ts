/** DEMO_METRICS=prometheus turns on GET /metrics; otherwise no OpenTelemetry package is even loaded. */
export function prometheusMetricsEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DEMO_METRICS?.trim().toLowerCase() === 'prometheus';
}
