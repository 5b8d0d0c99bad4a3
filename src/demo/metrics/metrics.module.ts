import { Module } from '@nestjs/common';
import { MetricsController } from './metrics.controller.js';
import { prometheusExporter } from './prometheus-metrics.js';

// Registered on import, so the global meter provider exists before the database module looks for one.
prometheusExporter();

/** GET /metrics (DEMO_METRICS=prometheus); imported only then. */
@Module({ controllers: [MetricsController] })
export class MetricsModule {}
