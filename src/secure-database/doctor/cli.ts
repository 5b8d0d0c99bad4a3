#!/usr/bin/env node
// The package's bin: `npx nestjs-secure-postgres doctor`. A CLI, so it writes to stdout/stderr itself.
import { runDoctorCommand } from './doctor-command.js';

runDoctorCommand({ argv: process.argv.slice(2), env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }).then(
  (status) => {
    process.exitCode = status;
  },
  (error: unknown) => {
    // A bug, not a finding: the name and message only (a stack or cause could carry driver detail).
    process.stderr.write(`nestjs-secure-postgres doctor: internal error: ${error instanceof Error ? `${error.name}: ${error.message}` : 'unknown'}\n`);
    process.exitCode = 2;
  },
);
