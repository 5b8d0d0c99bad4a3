import { describe, expect, it } from '@jest/globals';
import { Injectable } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type pg from 'pg';
import { DatabaseService, InjectDatabase, InjectPool, SecureDatabaseModule } from '../../src/index.js';
import { harness } from '../support/harness.js';

@Injectable()
class ReportsRepository {
  constructor(
    readonly primary: DatabaseService,
    @InjectDatabase('replica') readonly replica: DatabaseService,
    @InjectPool('replica') readonly replicaPool: pg.Pool,
  ) {}
}

describe('named connections', () => {
  it('a default and a named connection live side by side, each with its own pool', async () => {
    const h = harness();
    const moduleRef = await Test.createTestingModule({
      imports: [
        SecureDatabaseModule.forRoot({ url: h.tls.url(), sslRootCert: h.caPem, applicationName: 'primary' }),
        SecureDatabaseModule.forRootAsync({ name: 'replica', useFactory: () => ({ url: h.tls.url(), sslRootCert: h.caPem, applicationName: 'replica' }) }),
      ],
      providers: [ReportsRepository],
    }).compile();
    const app = await moduleRef.createNestApplication({ logger: false }).init();
    const repo = app.get(ReportsRepository);
    expect(repo.primary).not.toBe(repo.replica);
    expect(repo.replica.pool).toBe(repo.replicaPool);
    const name = async (pool: pg.Pool) => (await pool.query('SHOW application_name')).rows[0].application_name;
    expect(await name(repo.primary.pool)).toBe('primary');
    expect(await name(repo.replicaPool)).toBe('replica');
    await app.close();
    expect(repo.primary.pool.ended && repo.replicaPool.ended).toBe(true);
  });
});
