import { describe, expect, it } from '@jest/globals';
import { Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { SecureDatabaseModule, type SecureDatabaseModuleOptions, type SecureDatabaseOptionsFactory } from '../../src/index.js';
import { harness } from '../support/harness.js';
import { UsersRepository } from './registration-fixtures.js';

@Injectable()
class DatabaseOptionsFromVault implements SecureDatabaseOptionsFactory {
  calls = 0;
  async createSecureDatabaseOptions(): Promise<SecureDatabaseModuleOptions> {
    this.calls++;
    const h = harness();
    return { url: h.tls.url(), sslRootCert: h.caPem, applicationName: 'from-vault' };
  }
}

@Module({ providers: [DatabaseOptionsFromVault], exports: [DatabaseOptionsFromVault] })
class VaultModule {}

describe('SecureDatabaseModule.forRootAsync with useClass / useExisting', () => {
  it('useClass instantiates the options factory', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [SecureDatabaseModule.forRootAsync({ useClass: DatabaseOptionsFromVault })],
      providers: [UsersRepository],
    }).compile();
    const app = await moduleRef.createNestApplication({ logger: false }).init();
    expect(await app.get(UsersRepository).serverSaysTls()).toBe(true);
    await app.close();
  });

  it('useExisting reuses a factory provided by an imported module', async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [VaultModule, SecureDatabaseModule.forRootAsync({ imports: [VaultModule], useExisting: DatabaseOptionsFromVault })],
      providers: [UsersRepository],
    }).compile();
    const app = await moduleRef.createNestApplication({ logger: false }).init();
    const repo = app.get(UsersRepository);
    const { rows } = await repo.pool.query('SHOW application_name');
    expect(rows[0].application_name).toBe('from-vault');
    expect(app.get(DatabaseOptionsFromVault).calls).toBe(1);
    await app.close();
  });
});
