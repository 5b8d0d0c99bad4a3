/** The demo's second connection, registered when DATABASE_REPLICA_URL is set: a read replica. */
export const REPLICA = 'replica';

export function replicaConfigured(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(env.DATABASE_REPLICA_URL?.trim());
}
