/**
 * What sits between the app and PostgreSQL. `transaction`: PgBouncer/Supavisor/Neon's -pooler in
 * transaction mode, where each transaction may run on another server connection shared with other
 * clients; `session`: a pooler that gives each client connection one server connection for its life.
 * Both refuse the server settings the module otherwise sends in the startup packet.
 */
export type PoolerMode = 'none' | 'transaction' | 'session';

export const POOLER_MODES: readonly PoolerMode[] = ['none', 'transaction', 'session'];

export interface PoolerDecision {
  mode: PoolerMode;
  /** Why: DATABASE_POOLER, or the known pooler the host and port name. */
  source: 'DATABASE_POOLER' | 'host' | 'default';
  /** The pooler recognised from the host, for the startup log. */
  detected?: string;
}

// Hosts and ports of managed poolers whose mode is fixed by the address.
const KNOWN_POOLERS: Array<{ host: RegExp; port?: number; mode: PoolerMode; name: string }> = [
  { host: /-pooler\.[a-z0-9.-]+\.neon\.tech$/i, mode: 'transaction', name: "Neon's pooler (PgBouncer, transaction mode)" },
  { host: /\.pooler\.supabase\.com$/i, port: 6543, mode: 'transaction', name: 'Supabase Supavisor (transaction mode, port 6543)' },
  { host: /\.pooler\.supabase\.com$/i, port: 5432, mode: 'session', name: 'Supabase Supavisor (session mode, port 5432)' },
  { host: /\.supabase\.co$/i, port: 6543, mode: 'transaction', name: "Supabase's dedicated PgBouncer (transaction mode, port 6543)" },
];

/** DATABASE_POOLER when set (`none` turns detection off), else what the first host and its port say. */
export function decidePooler(configured: PoolerMode | undefined, host: string, port: number): PoolerDecision {
  if (configured) return { mode: configured, source: 'DATABASE_POOLER' };
  const known = KNOWN_POOLERS.find((p) => p.host.test(host) && (p.port === undefined || p.port === port));
  return known ? { mode: known.mode, source: 'host', detected: known.name } : { mode: 'none', source: 'default' };
}
