#!/usr/bin/env node
// The package's bin: `npx nestjs-secure-postgres doctor | migrate | local-db`. A CLI, so it writes to stdout/stderr itself.
import { runDoctorCommand } from './doctor-command.js';

const [command, ...rest] = process.argv.slice(2);
const io = { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };

// Each command is loaded only when asked for: the doctor never loads the migration runner or the local server code.
async function main(): Promise<number> {
  if (command === 'migrate') {
    const { runMigrateCommand } = await import('../migrate/migrate-command.js');
    return runMigrateCommand({ ...io, argv: rest });
  }
  if (command === 'local-db') {
    // Outside dist/secure-database: the local server code (src/local-postgres) ships for this command only.
    const { runLocalDbCommand } = await import('../../local-db/local-db-command.js');
    return runLocalDbCommand({ ...io, argv: rest });
  }
  return runDoctorCommand({ ...io, argv: process.argv.slice(2) });
}

main().then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    // A bug, not a finding: the name and message only (a stack or cause could carry driver detail).
    process.stderr.write(`nestjs-secure-postgres ${command === 'migrate' || command === 'local-db' ? command : 'doctor'}: internal error: ${error instanceof Error ? `${error.name}: ${error.message}` : 'unknown'}\n`);
    process.exitCode = 2;
  },
);
