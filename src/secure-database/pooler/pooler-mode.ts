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

/**
 * DATABASE_POOLER when set (`none` turns detection off), else what every host of the list and its port
 * say: libpq tries them in turn, so each new connection may reach any of them. Hosts that need
 * different modes are a problem (only the operator knows which mode is safe for all of them).
 */
export function decidePooler(configured: PoolerMode | undefined, hosts: ReadonlyArray<{ host: string; port: number }>, problems: string[]): PoolerDecision {
  if (configured) return { mode: configured, source: 'DATABASE_POOLER' };
  const decisions = hosts.map(({ host, port }) => KNOWN_POOLERS.find((p) => p.host.test(host) && (p.port === undefined || p.port === port)));
  const modes = new Set(decisions.map((known) => known?.mode ?? 'none'));
  if (modes.size > 1) {
    problems.push(`DATABASE_URL lists hosts that need different pooler modes: set DATABASE_POOLER (pooler) to the mode that holds for every host (${POOLER_MODES.join(', ')})`);
    // Until then the mode that is safe behind any of them (it only costs speed on a direct server).
    return { mode: modes.has('transaction') ? 'transaction' : 'session', source: 'host' };
  }
  const known = decisions[0];
  return known ? { mode: known.mode, source: 'host', detected: known.name } : { mode: 'none', source: 'default' };
}
