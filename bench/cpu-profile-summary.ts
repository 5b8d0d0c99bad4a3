// Summarises a V8 .cpuprofile (node --cpu-prof): self time by area (this library, each package, Node
// internals, GC) and the top functions by self time, plus inclusive time of the library's functions.
//   node build/bench/bench/cpu-profile-summary.js build/profiles/CPU.….cpuprofile [top=25]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
}

function areaOf(url: string, name: string): string {
  if (!url) return name.startsWith('(') ? name : '(native)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1];
  if (url.includes('/build/bench/src/') || url.includes('/src/secure-database/')) return 'secure-database (this library)';
  if (url.includes('/build/bench/bench/')) return 'bench harness';
  if (url.startsWith('node:')) return 'node internals';
  return url;
}

function label(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const file = url.replace(/^.*\/(node_modules|build\/bench)\//, '').replace(/^file:\/\//, '');
  return `${functionName || '(anonymous)'} ${file ? `${file}:${lineNumber + 1}` : ''}`.trim();
}

const [path, topArg] = process.argv.slice(2);
if (!path) throw new Error('usage: cpu-profile-summary.js <file.cpuprofile> [top]');
const top = Number(topArg ?? 25);
const profile = JSON.parse(readFileSync(path, 'utf8')) as CpuProfile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
const msPerSample = (profile.endTime - profile.startTime) / 1000 / profile.samples.length;

const selfByFunction = new Map<string, number>();
const selfByArea = new Map<string, number>();
const inclusiveLibrary = new Map<string, number>();
let busy = 0;
for (const id of profile.samples) {
  const node = byId.get(id)!;
  const area = areaOf(node.callFrame.url, node.callFrame.functionName);
  selfByArea.set(area, (selfByArea.get(area) ?? 0) + 1);
  if (area === '(idle)') continue;
  busy++;
  selfByFunction.set(label(node), (selfByFunction.get(label(node)) ?? 0) + 1);
  const seen = new Set<string>();
  for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
    const frame = byId.get(at)!;
    if (areaOf(frame.callFrame.url, frame.callFrame.functionName) !== 'secure-database (this library)') continue;
    const name = label(frame);
    if (!seen.has(name)) inclusiveLibrary.set(name, (inclusiveLibrary.get(name) ?? 0) + 1);
    seen.add(name);
  }
}

const print = (title: string, entries: Map<string, number>, limit: number, of: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [name, samples] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, limit)) {
    process.stdout.write(`${(samples * msPerSample).toFixed(0).padStart(8)} ms ${((100 * samples) / of).toFixed(1).padStart(5)} %  ${name}\n`);
  }
};
process.stdout.write(`${path}: ${((profile.endTime - profile.startTime) / 1e6).toFixed(1)} s, ${profile.samples.length} samples, ${(busy * msPerSample).toFixed(0)} ms not idle\n`);
print('Self time by area (% of all samples)', selfByArea, 20, profile.samples.length);
print(`Top ${top} functions by self time (% of non-idle)`, selfByFunction, top, busy);
print('This library: inclusive time (% of non-idle)', inclusiveLibrary, top, busy);
