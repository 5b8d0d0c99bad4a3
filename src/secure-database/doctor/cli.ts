#!/usr/bin/env node
// The package's bin: `npx nestjs-secure-postgres doctor | migrate | local-db`. A CLI, so it writes to stdout/stderr itself.
import { USAGE, runDoctorCommand } from './doctor-command.js';

const [command, ...rest] = process.argv.slice(2);
const io = { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr };

const OTHER_COMMANDS = `Also:
  nestjs-secure-postgres migrate [up|status|create <name>] [--dir <folder>]   (migrate --help)
  nestjs-secure-postgres local-db start|status|stop|reset [--write-env]      (local-db --help)
`;

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
  const argv = process.argv.slice(2);
  const word = argv.find((arg) => !arg.startsWith('-'));
  const overview = `${USAGE}\n${OTHER_COMMANDS}`;
  if (argv.length === 1 && (argv[0] === '-h' || argv[0] === '--help')) {
    process.stdout.write(overview);
    return 0;
  }
  // A plain word other than doctor (or none): name the commands. Anything else (a URL pasted as an argument…) is the doctor's to refuse without echoing it.
  if (word === undefined || (word !== 'doctor' && /^[\w-]{1,40}$/.test(word))) {
    process.stderr.write(`nestjs-secure-postgres: ${word === undefined ? 'no command' : `unknown command ${word}`}: the commands are doctor, migrate and local-db\n\n${overview}`);
    return 2;
  }
  return runDoctorCommand({ ...io, argv });
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
