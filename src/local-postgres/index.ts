// Throwaway local PostgreSQL with TLS, for the demo's embedded default, the tests and the benchmark.
// Not part of the library's public API.
export { startLocalPostgres, type LocalPostgres } from './local-postgres.js';
export { LocalPostgresCluster, type LocalClusterFacts, type ClusterSpec, freePort } from './local-postgres-cluster.js';
export { waitForReplay } from './streaming-standby.js';
