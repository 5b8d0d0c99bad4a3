import { Injectable, type OnModuleInit } from '@nestjs/common';
import { DatabaseService } from '../../index.js';
import { USER_STATUSES } from './user.js';

// Any 64-bit key: serialises concurrent startups of several instances around the DDL.
const SCHEMA_LOCK_KEY = 4_242_001;

/** Creates the demo table when missing. A real app would run migrations; the demo has zero setup. */
@Injectable()
export class UsersSchema implements OnModuleInit {
  constructor(private readonly db: DatabaseService) {}

  async onModuleInit(): Promise<void> {
    await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_catalog.pg_advisory_xact_lock($1)', [SCHEMA_LOCK_KEY]);
      await tx.execute(`
        CREATE TABLE IF NOT EXISTS users (
          id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
          email text NOT NULL UNIQUE CHECK (length(email) <= 254),
          name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
          status text NOT NULL DEFAULT 'active' CHECK (status IN (${USER_STATUSES.map((s) => `'${s}'`).join(', ')})),
          created_at timestamptz NOT NULL DEFAULT now()
        )`);
      // Serves the keyset pages (status = $1 AND id > $2 ORDER BY id) and the export.
      await tx.execute('CREATE INDEX IF NOT EXISTS users_status_id_idx ON users (status, id)');
    });
  }
}
