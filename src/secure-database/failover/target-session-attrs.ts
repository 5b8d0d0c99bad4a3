/** libpq's target_session_attrs: which kind of server a new connection must reach. */
export type TargetSessionAttrs = 'any' | 'read-write' | 'read-only' | 'primary' | 'standby' | 'prefer-standby';

export const TARGET_SESSION_ATTRS: readonly TargetSessionAttrs[] = ['any', 'read-write', 'read-only', 'primary', 'standby', 'prefer-standby'];

/** libpq's load_balance_hosts: `random` shuffles the host list for every new connection. */
export type LoadBalanceHosts = 'disable' | 'random';

/** What the server said about itself when the connection was checked (one round trip with the TLS assertion). */
export interface ServerState {
  /** pg_catalog.pg_is_in_recovery(): a standby (hot standby, or a primary still replaying after a promotion). */
  inRecovery: boolean;
  /** transaction_read_only of this session: a standby, or default_transaction_read_only = on. */
  readOnly: boolean;
}

/**
 * libpq's meanings: `read-write`/`read-only` look at whether the session accepts writes
 * (transaction_read_only), `primary`/`standby` at whether the server is in recovery. `prefer-standby`
 * asks for a standby in a first pass over the hosts and for any server in a second (see passesFor).
 */
export function meetsTarget(target: Exclude<TargetSessionAttrs, 'prefer-standby'>, state: ServerState): boolean {
  switch (target) {
    case 'any':
      return true;
    case 'read-write':
      return !state.readOnly;
    case 'read-only':
      return state.readOnly;
    case 'primary':
      return !state.inRecovery;
    case 'standby':
      return state.inRecovery;
  }
}

/** The passes over the host list a new connection makes, each with the target it must meet. */
export function passesFor(target: TargetSessionAttrs): Array<Exclude<TargetSessionAttrs, 'prefer-standby'>> {
  return target === 'prefer-standby' ? ['standby', 'any'] : [target];
}

/** The words a log line or an error uses for a target. */
export function describeTarget(target: TargetSessionAttrs): string {
  const words: Record<TargetSessionAttrs, string> = {
    any: 'any server',
    'read-write': 'a server that accepts writes',
    'read-only': 'a read-only server',
    primary: 'a primary',
    standby: 'a standby',
    'prefer-standby': 'a standby, else any server',
  };
  return words[target];
}
