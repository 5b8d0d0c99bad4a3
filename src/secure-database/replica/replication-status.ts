/**
 * The health ping: whether the server is a standby, and how far behind its primary it is. Lag is 0
 * when everything received has been replayed (an idle primary sends nothing, so the age of the last
 * replayed transaction alone would grow for ever), else the age of the last transaction replayed.
 * A standby cut off from its primary also shows 0 once it has replayed what it received: pair the
 * lag with the primary's own health. pg_catalog-qualified, like the TLS assertion.
 */
export const REPLICATION_STATUS_SQL =
  'SELECT pg_catalog.pg_is_in_recovery() AS standby, CASE ' +
  'WHEN NOT pg_catalog.pg_is_in_recovery() THEN NULL ' +
  'WHEN pg_catalog.pg_last_wal_receive_lsn() OPERATOR(pg_catalog.=) pg_catalog.pg_last_wal_replay_lsn() THEN 0 ' +
  "ELSE pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.pg_last_xact_replay_timestamp()) END AS lag";

export interface ReplicationStatus {
  role: 'primary' | 'standby';
  /** Seconds behind the primary, on a standby (null when it has replayed no transaction yet). */
  lagSeconds?: number | null;
}

export function replicationStatus(row: { standby: boolean; lag: number | string | null } | undefined): ReplicationStatus {
  if (!row?.standby) return { role: 'primary' };
  const lag = row.lag === null ? null : Math.max(0, Math.round(Number(row.lag) * 1000) / 1000);
  return { role: 'standby', lagSeconds: lag };
}
