import { AggregationTemporality, DataPointType, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';

/** One data point as the exporter got it: a sum/gauge value, or a histogram's count and sum. */
export interface Point {
  name: string;
  attributes: Record<string, unknown>;
  value: number;
  /** Histograms: the sum of the recorded values (value is their count). */
  sum?: number;
}

/** A real SDK MeterProvider whose reader exports, on demand only, to an InMemoryMetricExporter. */
export class MetricsProbe {
  readonly exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
  // Exports when asked (forceFlush), never on its own during a test.
  readonly reader = new PeriodicExportingMetricReader({ exporter: this.exporter, exportIntervalMillis: 3_600_000 });
  readonly provider = new MeterProvider({ readers: [this.reader] });

  /** Every data point now (cumulative since the provider started). */
  async points(): Promise<Point[]> {
    this.exporter.reset();
    await this.reader.forceFlush();
    const points: Point[] = [];
    for (const resource of this.exporter.getMetrics()) {
      for (const scope of resource.scopeMetrics) {
        for (const metric of scope.metrics) {
          for (const point of metric.dataPoints) {
            const attributes = point.attributes as Record<string, unknown>;
            if (metric.dataPointType === DataPointType.HISTOGRAM) {
              const histogram = point.value as { count: number; sum?: number };
              points.push({ name: metric.descriptor.name, attributes, value: histogram.count, sum: histogram.sum });
            } else {
              points.push({ name: metric.descriptor.name, attributes, value: point.value as number });
            }
          }
        }
      }
    }
    return points;
  }

  shutdown(): Promise<void> {
    return this.provider.shutdown();
  }
}

/** The total of `name`'s points whose attributes include `match`. */
export function total(points: Point[], name: string, match: Record<string, unknown> = {}): number {
  return points
    .filter((p) => p.name === name && Object.entries(match).every(([key, value]) => p.attributes[key] === value))
    .reduce((sum, p) => sum + p.value, 0);
}
