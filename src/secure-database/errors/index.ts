export * from './secure-database.error.js';
export * from './configuration.errors.js';
export * from './connection.errors.js';
export * from './query.errors.js';
export * from './pooler.errors.js';
export * from './stream.errors.js';
export * from './cancellation.errors.js';
export { toDatabaseError, isConnectionUnusable } from './to-database-error.js';
export { startupFailureHint } from './startup-failure-hint.js';
