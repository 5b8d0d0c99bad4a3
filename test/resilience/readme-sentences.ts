import { msRange } from './failure-table.js';
import type { FigureRecord } from './figures.js';

/** Every value of `key` (arrays flattened) over the records of `scenario`; a missing scenario or key is an error. */
function valuesOf(records: FigureRecord[], scenario: string) {
  const figures = records.filter((r) => r.scenario === scenario).map((r) => r.figures);
  if (figures.length === 0) throw new Error(`the results have no "${scenario}" figure`);
  const values = (key: string): unknown[] =>
    figures.flatMap((f) => {
      if (!(key in f)) throw new Error(`"${scenario}" has no ${key}`);
      return Array.isArray(f[key]) ? (f[key] as unknown[]) : [f[key]];
    });
  const numbers = (key: string) => {
    const all = values(key);
    if (!all.every((v) => typeof v === 'number')) throw new Error(`"${scenario}" ${key} is not always a number: ${JSON.stringify(all)}`);
    return all as number[];
  };
  return {
    ms: (key: string) => msRange(numbers(key)),
    n: (key: string) => {
      const all = numbers(key);
      const [lo, hi] = [Math.min(...all), Math.max(...all)].map((v) => v.toLocaleString('en-US'));
      return lo === hi ? lo : `${lo}–${hi}`;
    },
    /** The distinct values, as code, in one phrase: `A`, `B` or `C`. */
    oneOf: (key: string) => {
      const all = [...new Set(values(key).map(String))].sort().map((code) => `\`${code}\``);
      return all.length > 1 ? `${all.slice(0, -1).join(', ')} or ${all.at(-1)}` : (all[0] ?? 'none');
    },
    runs: figures.length,
  };
}

const runsNote = (runs: number) => (runs === 1 ? 'one run' : `${runs} runs, ranges over them`);

/** The README's primary-failover figures ("Primary failover" section), from test/scale-out/failover.e2e-spec.ts. */
export function failoverSentence(records: FigureRecord[]): string {
  const f = valuesOf(records, 'primary failover');
  return (
    `${f.n('lostAcknowledgedWrites')} of ${f.n('acknowledgedWrites')} acknowledged writes lost (${runsNote(f.runs)}); ` +
    `writes resumed ${f.ms('resumedAfterPrimaryGoneMs')} after the primary was gone (\`pg_ctl promote\` returned after ${f.ms('promotionMs')}; the spec allows 5 s); ` +
    `${f.n('failedWrites')} writes failed fast, with ${f.oneOf('failedCodes')}; the slowest call took ${f.ms('slowestCallMs')}.`
  );
}

/** The README's rotation figures ("Rotating a password without a restart"), from test/credentials/password-rotation.e2e-spec.ts. */
export function rotationSentence(records: FigureRecord[]): string {
  const f = valuesOf(records, 'password rotation under load');
  return (
    `${f.n('requests')} requests (${runsNote(f.runs)}), of which ${f.n('failed')} failed, all ${f.oneOf('failedCodes')}, ` +
    `with ${f.n('busyOnClientAtTermination')} connections busy when the ${f.n('terminatedConnections')} were terminated; ` +
    `in the second after the termination ${f.n('servedAfterTermination')} requests succeeded on new connections opened with the new password.`
  );
}

/** The README's pipelining figures ("Throughput: statement cache and pipelining"), from test/pipeline/pipelining.e2e-spec.ts. */
export function pipeliningSentence(records: FigureRecord[]): string {
  const many = valuesOf(records, 'pipelining: many callers');
  const lost = valuesOf(records, 'pipelining: connection lost');
  return (
    `${many.n('reads')} reads by ${many.n('callers')} callers over a pool of ${many.n('poolMax')}: ${many.n('wrongAnswers')} wrong answers, ` +
    `pipelines up to ${many.n('deepestPipeline')} statements deep; a connection terminated with ${lost.n('inFlightOnLostConnection')} statements in flight ` +
    `failed ${lost.n('failed')}, and ${lost.n('otherCallersAnswered')} of the ${lost.n('otherCallers')} other callers got their own answers (${runsNote(many.runs)}).`
  );
}

/** The README's high-availability figures ("High availability: …"), from test/ha/pg-auto-failover.e2e-spec.ts. */
export function highAvailabilitySentence(records: FigureRecord[]): string {
  const planned = valuesOf(records, 'pg_auto_failover: planned failover');
  const postgres = valuesOf(records, "pg_auto_failover: primary's postgres killed");
  const node = valuesOf(records, "pg_auto_failover: primary's node killed");
  const monitor = valuesOf(records, 'pg_auto_failover: monitor down');
  const all = valuesOf(records, 'pg_auto_failover: every data node down, then back');
  return (
    `Planned \`pg_autoctl perform failover\` (returned after ${planned.ms('performFailoverMs')}): ${planned.n('lostAcknowledgedWrites')} of ${planned.n('acknowledgedWrites')} acknowledged writes lost, ` +
    `no write acknowledged for at most ${planned.ms('longestWriteGapMs')}, ${planned.n('failedWrites')} writes failed fast with ${planned.oneOf('failedCodes')}, the slowest call took ${planned.ms('slowestCallMs')}. ` +
    `Primary's postgres SIGKILLed (its keeper restarted it in place): ${postgres.n('lostAcknowledgedWrites')} of ${postgres.n('acknowledgedWrites')} lost, ` +
    `first write ${postgres.ms('resumedAfterFaultMs')} after the kill, ${postgres.n('failedWrites')} failed, the slowest call took ${postgres.ms('slowestCallMs')}. ` +
    `Primary's node killed (the monitor promoted a standby by itself): ${node.n('lostAcknowledgedWrites')} of ${node.n('acknowledgedWrites')} lost, ` +
    `first write ${node.ms('resumedAfterFaultMs')} after the kill, ${node.n('failedWrites')} failed fast with ${node.oneOf('failedCodes')}, the slowest call took ${node.ms('slowestCallMs')}. ` +
    `Monitor down: ${monitor.n('writes')} writes, ${monitor.n('failedWrites')} failed. ` +
    `Every data node stopped: 503s and health down; the first write ${all.ms('resumedAfterRestartMs')} after the nodes were started again (${runsNote(planned.runs)}).`
  );
}

/** The README sections whose figures are generated from a kept results file (of `set`), each with its heading as the README spells it. */
export function readmeSentences(records: FigureRecord[]): Array<{ section: string; heading: string; set: 'resilience' | 'ha'; make: () => string }> {
  return [
    { section: 'Primary failover', heading: '### Primary failover: host lists and `target_session_attrs`', set: 'resilience', make: () => failoverSentence(records) },
    { section: 'Rotating a password without a restart', heading: '### Rotating a password without a restart', set: 'resilience', make: () => rotationSentence(records) },
    { section: 'Throughput: statement cache and pipelining', heading: '### Throughput: statement cache and pipelining', set: 'resilience', make: () => pipeliningSentence(records) },
    {
      section: 'High availability',
      heading: '### High availability: pg_auto_failover, Patroni, managed HA endpoints',
      set: 'ha',
      make: () => highAvailabilitySentence(records),
    },
  ];
}
