import { SecureDatabaseError } from './secure-database.error.js';

/** The module's options or environment are invalid; `problems` lists every offending key and why. */
export class ConfigurationError extends SecureDatabaseError {
  readonly code = 'DB_CONFIGURATION';

  constructor(readonly problems: string[], options: { cause?: unknown } = {}) {
    super(
      problems.length === 1
        ? `Invalid database configuration: ${problems[0]}`
        : `Invalid database configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`,
      options,
    );
  }
}
