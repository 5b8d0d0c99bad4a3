import { Logger } from '@nestjs/common';
import { readDatabaseEnv } from '../config/database.config.js';
import { ConfigurationError } from '../errors/configuration.errors.js';
import { renderJson, renderText } from './report.js';
import { runDoctor } from './run-doctor.js';

export const USAGE = `Usage: nestjs-secure-postgres doctor [--json] [--url-stdin]

Connects to the database exactly as SecureDatabaseModule would (DATABASE_URL or DATABASE_URL_FILE and
the other DATABASE_* variables and APP_ENV from the environment) and reports what is true of that
connection: one row per check (pass, warn, fail; skip when a failed connection left it unchecked),
its evidence and the fix, then a one-line verdict.

  --json        print { verdict, summary, target, checks: [{ id, status, evidence, fix }] }
  --url-stdin   read the URL from standard input (never give it as an argument: shell history)
  -h, --help    this text

Exit status: 0 nothing failed (warnings allowed), 1 a check failed, 2 usage or configuration error.
`;

export interface CommandIo {
  argv: string[];
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
}

interface Parsed {
  json: boolean;
  urlStdin: boolean;
  help: boolean;
}

// Anything URL-shaped on the command line is never echoed back: it may carry the password.
function parse(argv: string[]): Parsed | string {
  const parsed: Parsed = { json: false, urlStdin: false, help: false };
  let command: string | undefined;
  for (const [i, arg] of argv.entries()) {
    if (arg === '--json') parsed.json = true;
    else if (arg === '--url-stdin') parsed.urlStdin = true;
    else if (arg === '-h' || arg === '--help') parsed.help = true;
    else if (/:\/\/|@|=/.test(arg)) return `argument ${i + 1} looks like a URL or a setting: never give the URL as an argument (shell history, process lists); use DATABASE_URL, DATABASE_URL_FILE or --url-stdin`;
    else if (command === undefined && !arg.startsWith('-')) command = arg;
    else return `unknown argument ${i + 1}${/^[\w-]{1,40}$/.test(arg) ? ` (${arg})` : ''}`;
  }
  if (parsed.help) return parsed;
  if (command !== 'doctor') return command === undefined ? 'no command: the command is doctor' : 'unknown command: the command is doctor';
  return parsed;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) text += chunk.toString();
  return text.trim();
}

/** The `doctor` command: returns the exit status. */
export async function runDoctorCommand(io: CommandIo): Promise<number> {
  const parsed = parse(io.argv);
  if (typeof parsed === 'string') {
    io.stderr.write(`nestjs-secure-postgres: ${parsed}\n\n${USAGE}`);
    return 2;
  }
  if (parsed.help) {
    io.stdout.write(USAGE);
    return 0;
  }
  // The pool's own log lines (Nest's Logger) would mix with the report: what they say is in the checks.
  Logger.overrideLogger(false);
  const options = readDatabaseEnv(io.env);
  if (parsed.urlStdin) {
    if (io.stdin.isTTY) io.stderr.write('Reading the URL from standard input (end with Ctrl-D)…\n');
    const url = await readAll(io.stdin);
    if (!url) {
      io.stderr.write('nestjs-secure-postgres: --url-stdin read nothing from standard input\n');
      return 2;
    }
    // The URL on stdin replaces DATABASE_URL and DATABASE_URL_FILE.
    options.url = url;
    delete options.urlFile;
  }
  try {
    const report = await runDoctor(options, io.env);
    io.stdout.write(parsed.json ? renderJson(report) : renderText(report));
    return report.verdict === 'fail' ? 1 : 0;
  } catch (error) {
    if (!(error instanceof ConfigurationError)) throw error;
    // The module's configuration errors name variables and parameters, never their values.
    if (parsed.json) io.stdout.write(`${JSON.stringify({ verdict: 'error', summary: 'configuration error', problems: error.problems, checks: [] }, null, 2)}\n`);
    io.stderr.write(`nestjs-secure-postgres doctor: configuration error\n${error.problems.map((p) => `  - ${p}`).join('\n')}\n`);
    return 2;
  }
}
