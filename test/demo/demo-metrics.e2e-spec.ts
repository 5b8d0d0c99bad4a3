import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import type { DatabasePool } from '../../src/secure-database/pool/database-pool.js';
import { getDatabasePoolToken } from '../../src/secure-database/secure-database.utils.js';
import { LogCapture } from '../support/log-capture.js';
import { type DemoApp, startDemoOnScratch } from './demo-app.js';

// Values sent through the API: never in a metric.
const EMAIL = 'metrics-9d4f1a@example.com';
const NAME = 'Metrics Marker 9d4f1a';

/** The value of the line `name{…} value` that has every label of `labels` (and none of `without`). */
function sample(text: string, name: string, labels: string, without?: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && labels.split(',').every((label) => l.includes(label)) && !(without && l.includes(without)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('demo GET /metrics (DEMO_METRICS=prometheus: the OTel Prometheus exporter on the global MeterProvider)', () => {
  let demo: DemoApp;
  let app: INestApplication;

  beforeAll(async () => {
    demo = await startDemoOnScratch({ DEMO_METRICS: 'prometheus', DATABASE_SLOW_QUERY_MS: '10000' }, new LogCapture());
    ({ app } = demo);
  });

  afterAll(() => demo?.close());

  it('serves the database metrics of the requests just made, matching the pool, with no value in it', async () => {
    const http = () => request(app.getHttpServer());
    await http().post('/users').send({ email: EMAIL, name: NAME }).expect(201);
    await http().post('/users').send({ email: EMAIL, name: NAME }).expect(409);
    await http().get('/users?limit=5').expect(200);
    const res = await http().get('/metrics').expect(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    const text: string = res.text;
    const pool = 'db_client_connection_pool_name="default"';
    // The exporter (0.301) keeps the conventions' names, dots made underscores, with no unit suffix on histograms.
    expect(sample(text, 'db_client_operation_duration_count', `${pool},db_operation_name="INSERT",db_system_name="postgresql"`, 'error_type')).toBe(1);
    expect(sample(text, 'db_client_operation_duration_count', `${pool},db_operation_name="INSERT",error_type="DB_UNIQUE_VIOLATION",db_response_status_code="23505"`)).toBe(1);
    const stats = app.get<DatabasePool>(getDatabasePoolToken()).stats();
    expect(sample(text, 'db_client_connection_count', `${pool},db_client_connection_state="idle"`)).toBe(stats.idle);
    expect(sample(text, 'db_client_connection_count', `${pool},db_client_connection_state="used"`)).toBe(stats.total - stats.idle);
    expect(sample(text, 'db_client_connection_pending_requests', pool)).toBe(0);
    expect(sample(text, 'db_client_connection_max', pool)).toBe(10);
    expect(sample(text, 'secure_postgres_tls_assertions_total', `${pool},secure_postgres_tls_assertion_outcome="passed"`)).toBe(stats.tlsAssertionsPassed);
    expect(text).not.toContain(EMAIL);
    expect(text).not.toContain(NAME);
  });
});
