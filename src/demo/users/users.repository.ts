import { Injectable, Optional } from '@nestjs/common';
import { DatabaseService, InjectDatabase, sql } from '../../index.js';
import { REPLICA } from '../replica.js';
import type { CreateUserInput, User, UserStatus } from './user.js';

const COLUMNS = sql.unsafeRaw('id, email, name, status, created_at AS "createdAt"');

export interface UsersPage {
  items: User[];
  /** The `after` of the next page; null on the last one. */
  next: string | null;
}

@Injectable()
export class UsersRepository {
  /** Where lists and exports read: the replica when one is configured (rows may lag the primary by its replication lag). */
  private readonly reads: DatabaseService;

  constructor(
    private readonly db: DatabaseService,
    @Optional() @InjectDatabase(REPLICA) replica?: DatabaseService,
  ) {
    this.reads = replica ?? db;
  }

  // `signal` (the request's, @RequestSignal): a client that disconnects cancels its statement on the server.
  create(input: CreateUserInput, signal?: AbortSignal): Promise<User> {
    return this.db.fetchrow<User>(sql`INSERT INTO users (email, name) VALUES (${input.email}, ${input.name}) RETURNING ${COLUMNS}`, { signal });
  }

  /**
   * The guide's `SELECT * FROM users WHERE status = $1`, one page at a time: keyset pagination on the
   * primary key (an index range scan whatever the page number), one row more than the page to know
   * whether another follows.
   */
  async findPage(status: UserStatus, limit: number, after?: string, signal?: AbortSignal): Promise<UsersPage> {
    const rows = await this.reads.fetch<User>(
      sql`SELECT ${COLUMNS} FROM users WHERE status = ${status} ${after ? sql`AND id > ${after}` : sql``} ORDER BY id LIMIT ${limit + 1}`,
      { signal },
    );
    const items = rows.slice(0, limit);
    return { items, next: rows.length > limit ? items[items.length - 1].id : null };
  }

  /** Every user with the status, read in batches: flat memory whatever the table's size. */
  streamByStatus(status: UserStatus, signal?: AbortSignal): AsyncGenerator<User> {
    return this.reads.stream<User>(sql`SELECT ${COLUMNS} FROM users WHERE status = ${status} ORDER BY id`, { signal });
  }

  /** How long an export may wait for its client: the stream gives up on a stalled reader after that anyway. */
  get exportIdleTimeoutMs(): number {
    return this.reads.streamIdleTimeoutMs;
  }

  findById(id: string, signal?: AbortSignal): Promise<User | null> {
    return this.db.fetchMaybeRow<User>(sql`SELECT ${COLUMNS} FROM users WHERE id = ${id}`, { signal });
  }

  updateStatus(id: string, status: UserStatus, signal?: AbortSignal): Promise<User | null> {
    return this.db.fetchMaybeRow<User>(sql`UPDATE users SET status = ${status} WHERE id = ${id} RETURNING ${COLUMNS}`, { signal });
  }
}
