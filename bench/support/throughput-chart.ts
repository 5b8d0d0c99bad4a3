import { writeFile } from 'node:fs/promises';
import type { ThroughputResult } from '../scenarios/throughput.scenario.js';

const WIDTH = 720;
const HEIGHT = 420;
const MARGIN = { top: 40, right: 190, bottom: 50, left: 70 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

const escape = (text: string) => text.replace(/[<>&"]/g, (c) => `&#${c.charCodeAt(0)};`);

/**
 * An SVG line chart of one workload's throughput against callers, one line per contender (callers
 * on a log scale), written beside the run's text output. No dependency: a few dozen SVG elements.
 */
export async function writeThroughputChart(path: string, title: string, results: ThroughputResult[]): Promise<string> {
  const callers = [...new Set(results.map((r) => r.callers))].sort((a, b) => a - b);
  const contenders = [...new Set(results.map((r) => r.contender))];
  const top = Math.max(...results.map((r) => r.opsPerSec)) * 1.1;
  const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
  const plotHeight = HEIGHT - MARGIN.top - MARGIN.bottom;
  const x = (c: number) =>
    MARGIN.left + (callers.length === 1 ? plotWidth / 2 : (Math.log(c / callers[0]) / Math.log(callers.at(-1)! / callers[0])) * plotWidth);
  const y = (ops: number) => MARGIN.top + plotHeight - (ops / top) * plotHeight;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${MARGIN.left}" y="22" font-size="14" font-weight="bold">${escape(title)}</text>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const ops = (top / 5) * i;
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotWidth}" y1="${y(ops)}" y2="${y(ops)}" stroke="#ddd"/>`,
      `<text x="${MARGIN.left - 8}" y="${y(ops) + 4}" text-anchor="end">${Math.round(ops).toLocaleString('en-US')}</text>`,
    );
  }
  for (const c of callers) {
    parts.push(`<text x="${x(c)}" y="${MARGIN.top + plotHeight + 18}" text-anchor="middle">${c}</text>`);
  }
  parts.push(
    `<text x="${MARGIN.left + plotWidth / 2}" y="${HEIGHT - 10}" text-anchor="middle">concurrent callers (log scale)</text>`,
    `<text transform="translate(16 ${MARGIN.top + plotHeight / 2}) rotate(-90)" text-anchor="middle">ops/s</text>`,
  );
  contenders.forEach((contender, i) => {
    const colour = COLOURS[i % COLOURS.length];
    const points = callers
      .map((c) => results.find((r) => r.contender === contender && r.callers === c))
      .filter((r): r is ThroughputResult => r !== undefined)
      .map((r) => [x(r.callers), y(r.opsPerSec)] as const);
    // A path rather than a polyline: some SVG renderers close a polyline as if it were a polygon.
    const d = points.map(([px, py], i) => `${i === 0 ? 'M' : 'L'} ${px.toFixed(1)} ${py.toFixed(1)}`).join(' ');
    parts.push(`<path fill="none" stroke="${colour}" stroke-width="2" d="${d}"/>`);
    for (const [px, py] of points) parts.push(`<circle cx="${px.toFixed(1)}" cy="${py.toFixed(1)}" r="3" fill="${colour}"/>`);
    const legendY = MARGIN.top + 10 + i * 20;
    parts.push(
      `<line x1="${WIDTH - MARGIN.right + 15}" x2="${WIDTH - MARGIN.right + 35}" y1="${legendY}" y2="${legendY}" stroke="${colour}" stroke-width="2"/>`,
      `<text x="${WIDTH - MARGIN.right + 40}" y="${legendY + 4}">${escape(contender)}</text>`,
    );
  });
  parts.push('</svg>');
  await writeFile(path, `${parts.join('\n')}\n`);
  return path;
}
