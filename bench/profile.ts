// One contender, one workload, one caller count, profiled with V8's CPU profiler for exactly the timed
// window (the same sampler as `node --cpu-prof`, minus startup and warm-up). With --peers every other
// contender is created and warmed first, as in `npm run bench`, where they share the process.
//   node build/bench/bench/profile.js --contender=service --workload=select --callers=16 --ops=40000 [--peers] [--out=x.cpuprofile]
// Then: node build/bench/bench/cpu-profile-summary.js x.cpuprofile
import 'reflect-metadata';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { startBenchDatabase, userIdFor } from './support/bench-database.js';
import { type Contender, pgPipelineContender, postgresJsContender, rawPgContender, serviceContender, typeormContender } from './support/contenders.js';
import { runLoad } from './support/measure.js';
import { sql } from '../src/index.js';
import { fixed, whole } from './support/report.js';

const arg = (name: string, fallback: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const contenderKey = arg('contender', 'service');
const workload = arg('workload', 'select');
const callers = Number(arg('callers', '16'));
const ops = Number(arg('ops', '40000'));
const out = arg('out', `build/profiles/${contenderKey}-${workload}-${callers}${process.argv.includes('--peers') ? '-peers' : ''}.cpuprofile`);
const poolMax = 10;

const operation = (c: Contender) => (workload === 'insert' ? (i: number) => c.insertEvent!(userIdFor(i), `event ${i}`) : (i: number) => c.selectUser!(userIdFor(i)));

const bench = await startBenchDatabase();
const contenders: Contender[] = [];
try {
  const { target } = bench;
  const make: Record<string, () => Promise<Contender> | Contender> = {
    service: () => serviceContender(target, poolMax),
    'service-pipelined': () => serviceContender(target, poolMax, true),
    // The PK select with per-call settings (tenant isolation), on a service of its own.
    'service-settings': async () => {
      const service = await serviceContender(target, poolMax);
      return { ...service, key: 'service-settings', selectUser: (id: number) => service.service.fetchrow<{ id: number }>(sql`SELECT id, name, email FROM bench_users WHERE id = ${id}`, { settings: { 'app.tenant_id': id % 8 } }) };
    },
    pg: () => rawPgContender(target, poolMax),
    typeorm: () => typeormContender(target, poolMax),
    'postgres.js': () => postgresJsContender(target, poolMax),
    'pg-pipeline': () => pgPipelineContender(target, poolMax),
  };
  const keys = process.argv.includes('--peers') ? Object.keys(make) : [contenderKey];
  for (const key of keys) contenders.push(await make[key]());
  for (const c of contenders) if (workload === 'select' || c.insertEvent) await runLoad(2_000, callers, operation(c));
  const op = operation(contenders.find((c) => c.key === contenderKey)!);
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  const sample = await runLoad(ops, callers, op);
  const { profile } = await session.post('Profiler.stop');
  session.disconnect();
  await writeFile(out, JSON.stringify(profile));
  process.stdout.write(
    `${contenderKey} ${workload} callers ${callers}: ${whole(sample.opsPerSec)} ops/s, p50 ${fixed(sample.p50Ms)} ms, client CPU ${fixed(sample.cpuUsPerOp, 1)} µs/op; profile: ${out}\n`,
  );
} finally {
  await Promise.allSettled(contenders.map((c) => c.close()));
  await bench.stop();
}
