import { Injectable } from '@nestjs/common';
import { DatabaseService, sql } from '../../index.js';
import type { CreateUserInput, User, UserStatus } from './user.js';

const COLUMNS = sql.unsafeRaw('id, email, name, status, created_at AS "createdAt"');

@Injectable()
export class UsersRepository {
  constructor(private readonly db: DatabaseService) {}

  create(input: CreateUserInput): Promise<User> {
    return this.db.fetchrow<User>(sql`INSERT INTO users (email, name) VALUES (${input.email}, ${input.name}) RETURNING ${COLUMNS}`);
  }

  /** The guide's `SELECT * FROM users WHERE status = $1`, with explicit columns. */
  findByStatus(status: UserStatus): Promise<User[]> {
    return this.db.fetch<User>(sql`SELECT ${COLUMNS} FROM users WHERE status = ${status} ORDER BY created_at, id`);
  }

  findById(id: string): Promise<User | null> {
    return this.db.fetchMaybeRow<User>(sql`SELECT ${COLUMNS} FROM users WHERE id = ${id}`);
  }

  updateStatus(id: string, status: UserStatus): Promise<User | null> {
    return this.db.fetchMaybeRow<User>(sql`UPDATE users SET status = ${status} WHERE id = ${id} RETURNING ${COLUMNS}`);
  }
}
