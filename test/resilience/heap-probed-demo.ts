import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { freePort } from '../../src/local-postgres/index.js';

const MAIN = join(import.meta.dirname, '..', '..', 'dist', 'main.js');
const PROBE = pathToFileURL(join(import.meta.dirname, 'heap-probe.mjs')).href;

export interface HeapProbedDemo {
  child: ChildProcess;
  url(path: string): string;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Heap in use in the demo process after full collections. */
  heapUsed(): Promise<number>;
}

/**
 * The built demo (`node dist/main.js`) with heap-probe.mjs preloaded, which answers heap questions
 * over an IPC channel: the app's own heap, measured outside jest's module sandbox, with no route added.
 */
export async function startHeapProbedDemo(env: Record<string, string>): Promise<HeapProbedDemo> {
  const port = await freePort();
  const child = spawn(process.execPath, ['--import', PROBE, MAIN], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  let output = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const listening = new Promise<void>((resolve, reject) => {
    const collect = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes('Listening on')) resolve();
    };
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    void exited.then(({ code }) => reject(new Error(`the demo exited (${code}) before listening:\n${output}`)));
  });
  await listening;
  return {
    child,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    output: () => output,
    exited,
    async heapUsed() {
      const answer = once(child, 'message') as Promise<[{ heapUsed: number }]>;
      child.send('heap');
      return (await answer)[0].heapUsed;
    },
  };
}
