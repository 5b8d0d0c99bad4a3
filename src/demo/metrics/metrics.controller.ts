import { Controller, Get, Req, Res } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { prometheusExporter } from './prometheus-metrics.js';

/** GET /metrics: the Prometheus text format, collected from the global MeterProvider at each scrape. */
@Controller('metrics')
export class MetricsController {
  @Get()
  scrape(@Req() request: IncomingMessage, @Res() response: ServerResponse): void {
    prometheusExporter().getMetricsRequestHandler(request, response);
  }
}
