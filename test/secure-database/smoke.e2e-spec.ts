import { describe, expect, it } from '@jest/globals';
import { Test } from '@nestjs/testing';
import { DatabaseService, SecureDatabaseModule } from '../../src/index.js';
import { harness } from '../support/harness.js';

describe('smoke', () => {
  it('connects with verify-full', async () => {
    const h = harness();
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRoot({ url: h.tls.url(), sslRootCert: h.caPem })],
    }).compile();
    const app = moduleRef.createNestApplication();
    await app.init();
    const db = app.get(DatabaseService);
    expect(db.stats().tlsAssertionsPassed).toBe(1);
    await app.close();
  });
});
