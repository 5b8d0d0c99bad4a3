import { randomBytes, randomUUID } from 'node:crypto';
import type { LocalPostgresCluster } from '../../src/local-postgres/index.js';
import { LoadRun, type Outcome, type RequestSpec } from './http-load.js';

/** Every submitted email ends with this, so a log or body that echoes one is easy to find. */
export const EMAIL_DOMAIN = 'resilience.test';

/**
 * A steady mix of the demo's reads and writes: POST /users, GET /users/:id (of a user created here,
 * else an absent one), PATCH /users/:id/status (never to `suspended`), and GET /users?status=suspended
 * (always an empty list, so the answer does not grow with the table). Remembers the ids of the 201s.
 */
export class UsersTraffic {
  /** Ids of the users whose POST got 201. */
  readonly created: string[] = [];
  private sequence = 0;
  private readonly tag = randomBytes(4).toString('hex');

  constructor(
    private readonly mix: Array<'create' | 'read' | 'update' | 'list'> = ['create', 'read', 'update', 'list'],
    /** How many created ids to keep for reads and updates (bounded, for long runs). */
    private readonly keep = Infinity,
  ) {}

  /** The next request: a LoadOptions.next. */
  next = (): RequestSpec => {
    const n = this.sequence++;
    const known = this.created.length ? this.created[n % this.created.length] : randomUUID();
    switch (this.mix[n % this.mix.length]) {
      case 'create':
        return this.create();
      case 'read': {
        const absent = n % 10 === 9 || !this.created.length;
        return { method: 'GET', path: `/users/${absent ? randomUUID() : known}`, expected: [absent ? 404 : 200] };
      }
      case 'update':
        return { method: 'PATCH', path: `/users/${known}/status`, body: { status: n % 2 ? 'inactive' : 'active' }, expected: [this.created.length ? 200 : 404] };
      case 'list':
        return { method: 'GET', path: '/users?status=suspended', expected: [200] };
    }
  };

  create(): RequestSpec & { body: { email: string; name: string } } {
    const n = this.sequence++;
    return { method: 'POST', path: '/users', body: { email: `u${n}-${this.tag}@${EMAIL_DOMAIN}`, name: `Resilience ${this.tag} ${n}` }, expected: [201] };
  }

  /** Notes the id of a 201 (call it from LoadOptions.onOutcome). */
  record = (o: Outcome): void => {
    if (o.spec.method === 'POST' && o.status === 201 && this.created.length < this.keep) this.created.push((o.body as { id: string }).id);
  };
}

/** How many of `ids` are rows of the users table of `cluster`'s database. */
export async function countUsers(cluster: LocalPostgresCluster, ids: string[]): Promise<number> {
  return cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE id = ANY($1::uuid[])', [ids]);
    return rows[0].n;
  }, cluster.facts.database);
}

/** How many rows the users table of `cluster`'s database has whose email is one of `emails`. */
export async function countEmails(cluster: LocalPostgresCluster, emails: string[]): Promise<number> {
  return cluster.withSuperuser(async (admin) => {
    const { rows } = await admin.query<{ n: number }>('SELECT count(*)::int AS n FROM users WHERE email = ANY($1::text[])', [emails]);
    return rows[0].n;
  }, cluster.facts.database);
}

/** Steady users traffic against the demo at `concurrency`, every answer recorded in order. */
export function startUsersLoad(
  baseUrl: string,
  options: { concurrency: number; timeoutMs: number; mix?: ConstructorParameters<typeof UsersTraffic>[0] },
): { traffic: UsersTraffic; outcomes: Outcome[]; load: LoadRun } {
  const traffic = new UsersTraffic(options.mix);
  const outcomes: Outcome[] = [];
  const load = new LoadRun(baseUrl, {
    concurrency: options.concurrency,
    timeoutMs: options.timeoutMs,
    next: traffic.next,
    onOutcome: (o) => {
      traffic.record(o);
      outcomes.push(o);
    },
  });
  return { traffic, outcomes, load };
}
