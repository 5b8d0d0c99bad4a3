import { afterAll, beforeAll, describe, expect, it } from '@jest/globals';
import { Controller, Get, type INestApplication, Post, UseGuards, UseInterceptors } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DatabaseService, SecureDatabaseModule } from '../../src/index.js';
import { harness, scratchDatabase } from '../support/harness.js';
import { createTenantTable } from './tenant-table.js';
import { TenantSettingsInterceptor, TokenGuard } from './tenant-recipe.js';

/** The README's Nest recipe end to end: handlers written with no tenant code see only their verified tenant's rows. */
@Controller('rows')
@UseGuards(TokenGuard)
@UseInterceptors(TenantSettingsInterceptor)
class RowsController {
  constructor(private readonly db: DatabaseService) {}

  @Get()
  async list(): Promise<number[]> {
    return (await this.db.fetch<{ tenant_id: number }>('SELECT tenant_id FROM tenant_rows ORDER BY id')).map((row) => row.tenant_id);
  }

  @Post()
  async add(): Promise<{ tenant: number }> {
    // The tenant comes from the setting (the verified user), not from the request body.
    return this.db.transaction((tx) =>
      tx.fetchrow<{ tenant: number }>("INSERT INTO tenant_rows (tenant_id, caller) VALUES (NULLIF(current_setting('app.tenant_id', true), '')::int, 1) RETURNING tenant_id AS tenant"),
    );
  }
}

describe('the Nest tenant recipe (auth guard + withSettings interceptor), pipelining on', () => {
  const h = harness();
  let app: INestApplication;
  let drop: () => Promise<void>;

  beforeAll(async () => {
    const scratch = await scratchDatabase(h.tls);
    drop = scratch.drop;
    await createTenantTable(scratch.cluster, scratch.cluster.facts.user, 3, 2);
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url: scratch.cluster.url(), sslRootCert: h.caPem, appEnv: 'production', poolMax: 4, pipelining: true })],
      controllers: [RowsController],
      providers: [TokenGuard, TenantSettingsInterceptor],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });
  afterAll(async () => {
    await app?.close();
    await drop?.();
  });

  const as = (tenant: string) => ({ authorization: `Bearer ${TokenGuard.tokenFor(tenant)}` });

  it('concurrent requests of three tenants each see only their own rows, and write only their own', async () => {
    const requests = Array.from({ length: 60 }, (_, i) => String((i % 3) + 1));
    const answers = await Promise.all(requests.map((tenant) => request(app.getHttpServer()).get('/rows').set(as(tenant))));
    answers.forEach((answer, i) => expect({ status: answer.status, body: answer.body }).toEqual({ status: 200, body: [Number(requests[i]), Number(requests[i])] }));
    const created = await request(app.getHttpServer()).post('/rows').set(as('2'));
    expect(created.body).toEqual({ tenant: 2 });
    expect((await request(app.getHttpServer()).get('/rows').set(as('2'))).body).toEqual([2, 2, 2]);
    expect((await request(app.getHttpServer()).get('/rows').set(as('1'))).body).toEqual([1, 1]);
  });

  it('a forged or missing token never reaches the database: 401', async () => {
    const forged = `${'1'}.${'0'.repeat(64)}`;
    expect((await request(app.getHttpServer()).get('/rows').set({ authorization: `Bearer ${forged}` })).status).toBe(401);
    expect((await request(app.getHttpServer()).get('/rows')).status).toBe(401);
    expect((await request(app.getHttpServer()).get('/rows').set({ 'x-tenant-id': '1' })).status).toBe(401);
  });
});
