import { metrics } from '@opentelemetry/api';
import { PrometheusExporter } from '@opentelemetry/exporter-prometheus';
import { MeterProvider } from '@opentelemetry/sdk-metrics';

/**
 * DEMO_METRICS=prometheus: an OpenTelemetry SDK MeterProvider whose reader is the OTel Prometheus
 * exporter, registered as the global meter provider before the database module starts (as an app's
 * instrumentation file does), so the module finds it with no option. GET /metrics serves the exporter.
 */
let exporter: PrometheusExporter | undefined;

/** The exporter, created and registered globally on first use (its own HTTP server is never started: the app's route serves it). */
export function prometheusExporter(): PrometheusExporter {
  if (!exporter) {
    exporter = new PrometheusExporter({ preventServerStart: true });
    metrics.setGlobalMeterProvider(new MeterProvider({ readers: [exporter] }));
  }
  return exporter;
}
