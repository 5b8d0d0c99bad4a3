import { Injectable } from '@nestjs/common';
import type pg from 'pg';
import { DatabaseService, InjectPool } from '../../src/index.js';

/** A user's provider: injects DatabaseService by type and the raw pool by decorator. */
@Injectable()
export class UsersRepository {
  constructor(
    readonly db: DatabaseService,
    @InjectPool() readonly pool: pg.Pool,
  ) {}

  async serverSaysTls(): Promise<boolean> {
    const { rows } = await this.pool.query('SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()');
    return rows[0].ssl;
  }
}
