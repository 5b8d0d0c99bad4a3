import { describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { SecureDatabaseModule } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { UsersRepository } from './registration-fixtures.js';

describe('SecureDatabaseModule.forRoot', () => {
  it('provides DatabaseService and the pool globally, over verified TLS', async () => {
    const h = harness();
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url: h.tls.url(), sslRootCert: h.caPem })],
      providers: [UsersRepository],
    }).compile();
    const app = await moduleRef.createNestApplication({ logger: false }).init();
    const repo = app.get(UsersRepository);
    expect(await repo.serverSaysTls()).toBe(true);
    expect(repo.db.pool).toBe(repo.pool);
    await app.close();
    expect(repo.pool.ended).toBe(true);
  });
});
