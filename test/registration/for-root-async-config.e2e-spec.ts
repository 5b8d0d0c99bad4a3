import { afterEach, describe, expect, it } from '@jest/globals';
import { ConfigModule } from '@nestjs/config';
import { Test } from '@nestjs/testing';
import { ConfigurationError, SecureDatabaseModule, databaseConfig } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { UsersRepository } from './registration-fixtures.js';

const saved = { ...process.env };
afterEach(() => {
  for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
  Object.assign(process.env, saved);
});

describe('SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())', () => {
  it('reads DATABASE_* from the environment through @nestjs/config', async () => {
    const h = harness();
    process.env.DATABASE_URL = h.tls.url();
    process.env.DATABASE_SSL_ROOT_CERT = h.caPath;
    process.env.DATABASE_POOL_MAX = '3';
    const moduleRef = await Test.createTestingModule({
      imports: [ConfigModule.forRoot({ ignoreEnvFile: true }), SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())],
      providers: [UsersRepository],
    }).compile();
    const app = await moduleRef.createNestApplication({ logger: false }).init();
    const repo = app.get(UsersRepository);
    expect(await repo.serverSaysTls()).toBe(true);
    expect(repo.pool.options.max).toBe(3);
    await app.close();
  });

  it('fails startup with every offending variable named and no password', async () => {
    const h = harness();
    process.env.DATABASE_URL = h.tls.url({ sslmode: 'disable' });
    process.env.DATABASE_POOL_MAX = 'lots';
    const error = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())],
    })
      .compile()
      .catch((e: unknown) => e as Error);
    expect(error).toBeInstanceOf(ConfigurationError);
    expect((error as Error).message).toContain('DATABASE_POOL_MAX (poolMax) must be a whole number of connections');
    expect((error as Error).message).toContain('sslmode=disable may send credentials and data in plaintext and is refused');
    expect((error as Error).message).not.toContain(h.tls.facts.password);
  });

  it('says how to set DATABASE_URL when it is missing', async () => {
    delete process.env.DATABASE_URL;
    const error = await Test.createTestingModule({ imports: [SecureDatabaseModule.forRootAsync(databaseConfig.asProvider())] })
      .compile()
      .catch((e: unknown) => e as Error);
    expect((error as Error).message).toMatch(/DATABASE_URL environment variable must be set: store the connection URL as a secret/);
  });
});
