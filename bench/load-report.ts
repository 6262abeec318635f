import {
  BOMB_READERS,
  HEALTHZ_TARGET_MS,
  LOAD_KINDS,
  READERS,
  RSS_TARGET_MB,
  UPLOADS,
  type KindResult,
  type LoadKind,
  type LoadPhase,
  type LoadResults,
} from './load.js';
import { INSTANCES_PER_REQUEST } from './ingest.js';
import { BOMB_SIDE } from './render-bomb.js';
import { fixed, renderColumns } from './report.js';
import type { ServerWatch } from './watch.js';

const KIND_LABELS: Record<LoadKind, string> = {
  seriesMetadata: 'series metadata',
  ctFrame: 'CT frame 1',
  cineFrame: 'cine frame',
  bombThumbnail: 'render bomb thumbnail',
  bombRendered: 'render bomb rendered, new viewport',
  stow: `STOW (${INSTANCES_PER_REQUEST} instances a request)`,
};
const READ_KINDS = LOAD_KINDS.filter((k) => k !== 'stow');

/** What kept the load case from running (as opposed to a figure that missed its target). */
export function loadFailures(l: LoadResults): string[] {
  return [
    ...(l.error ? [l.error] : []),
    ...(l.plain && 'error' in l.plain ? [`load: ${l.plain.error}`] : []),
    ...(l.bomb && 'error' in l.bomb ? [`render bomb: ${l.bomb.error}`] : []),
    ...(l.withBomb && 'error' in l.withBomb ? [`load + render bomb: ${l.withBomb.error}`] : []),
  ];
}

type Verdict = 'PASS' | 'MISS' | '';

/**
 * The load case's table: the server at rest, under load, and under load with a render bomb stored; each figure of a
 * target also as a ratio to it (below 1 is within), and PASS/MISS.
 */
export function renderLoad(l: LoadResults): string {
  const phases = [l.plain, l.withBomb].map((p) => (p && 'kinds' in p ? p : undefined));
  const [plain, bomb] = phases;
  const header = ['metric', 'idle', 'load', '÷ target', 'load + render bomb', '÷ target', 'target', 'load result', 'bomb result'];
  const rows: string[][] = [];
  const cell = (p: LoadPhase | undefined, of: (p: LoadPhase) => string) => (p ? of(p) : '');
  const row = (metric: string, idle: string, of: (p: LoadPhase) => string, judged?: { target: string; value: (p: LoadPhase) => number; bound: number }) => {
    const ratio = (p: LoadPhase | undefined) => (p && judged ? `${(judged.value(p) / judged.bound).toFixed(2)}×` : '');
    const verdict = (p: LoadPhase | undefined): Verdict => (p && judged ? (judged.value(p) <= judged.bound ? 'PASS' : 'MISS') : '');
    rows.push([metric, idle, cell(plain, of), ratio(plain), cell(bomb, of), ratio(bomb), judged?.target ?? '', verdict(plain), verdict(bomb)]);
  };
  const kind = (p: LoadPhase, k: LoadKind) => p.kinds[k];
  for (const k of [...READ_KINDS, 'stow' as const]) {
    if (!phases.some((p) => p && kind(p, k))) continue;
    const label = KIND_LABELS[k];
    const of = (f: (r: KindResult) => string) => (p: LoadPhase) => (kind(p, k) ? f(kind(p, k)!) : '');
    row(`${label}, p50 / p95 / p99 ms`, '', of((r) => (r.ok ? [r.p50Ms, r.p95Ms, r.p99Ms].map((ms) => fixed(ms, 1)).join(' / ') : 'none')));
    row(`${label}, answers/s (refused, errors)`, '', of((r) => `${fixed(r.perSecond, 1)} (${r.refused}, ${r.errors})`));
    if (k === 'stow') {
      row('uploads, instances stored/s; MB/s', '', (p) => {
        const r = kind(p, k);
        return r ? `${fixed((r.instances ?? 0) / p.seconds, 0)}; ${fixed(r.bytes / 1e6 / p.seconds, 1)}` : '';
      });
    }
  }
  const reads = (p: LoadPhase) => READ_KINDS.flatMap((k) => (p.kinds[k] ? [p.kinds[k]] : []));
  const all = (p: LoadPhase) => Object.values(p.kinds);
  row('reads answered, requests/s', '', (p) => fixed(reads(p).reduce((n, r) => n + r.perSecond, 0), 1));
  row('reads, MB/s', '', (p) => fixed(reads(p).reduce((n, r) => n + r.bytes, 0) / 1e6 / p.seconds, 1));
  const errors = (p: LoadPhase) => all(p).reduce((n, r) => n + r.errors, 0);
  rows.push([
    'errors (5xx, wrong answers, cut connections, timeouts)',
    '',
    cell(plain, (p) => String(errors(p))),
    '',
    cell(bomb, (p) => String(errors(p))),
    '',
    'none',
    plain ? (errors(plain) ? 'MISS' : 'PASS') : '',
    bomb ? (errors(bomb) ? 'MISS' : 'PASS') : '',
  ]);
  row('refused with a reason (413, 422, 429, 503, 507)', '', (p) => String(all(p).reduce((n, r) => n + r.refused, 0)));
  const idle = l.idle;
  const idleOf = (of: (w: ServerWatch) => string) => (idle ? of(idle) : '');
  row('server peak RSS (VmHWM or highest sample), MB', idleOf((w) => fixed(w.peakRssMB, 0)), (p) => fixed(p.watch.peakRssMB, 0), {
    target: `< ${RSS_TARGET_MB} MB`,
    value: (p) => p.watch.peakRssMB,
    bound: RSS_TARGET_MB,
  });
  row('server RSS, highest 100 ms sample, MB', idleOf((w) => fixed(w.sampledPeakRssMB, 0)), (p) => fixed(p.watch.sampledPeakRssMB, 0));
  row('open file descriptors, peak (median)', idleOf((w) => `${w.peakFds} (${w.medianFds})`), (p) => `${p.watch.peakFds} (${p.watch.medianFds})`);
  row('/healthz every 100 ms, p50 / p99 ms', idleOf((w) => `${fixed(w.healthz.p50Ms, 1)} / ${fixed(w.healthz.p99Ms, 1)}`), (p) => `${fixed(p.watch.healthz.p50Ms, 1)} / ${fixed(p.watch.healthz.p99Ms, 1)}`);
  row('/healthz, longest ms', idleOf((w) => fixed(w.healthz.maxMs, 1)), (p) => fixed(p.watch.healthz.maxMs, 1), {
    target: `≤ ${HEALTHZ_TARGET_MS} ms throughout`,
    value: (p) => p.watch.healthz.maxMs,
    bound: HEALTHZ_TARGET_MS,
  });
  row('/healthz calls (not 200)', idleOf((w) => `${w.healthz.calls} (${w.healthz.notOk})`), (p) => `${p.watch.healthz.calls} (${p.watch.healthz.notOk})`);
  row('server CPU, s', '', (p) => fixed(p.serverCpuSeconds, 1));
  row('bench client CPU, s', '', (p) => fixed(p.clientCpuSeconds, 1));
  row('all cores busy, %', '', (p) => fixed(p.machine.busyPercent, 0));
  row('s after the phase until the last answer', '', (p) => fixed(p.drainSeconds, 1));

  const seconds = (plain ?? bomb)?.seconds;
  const b = l.bomb;
  return [
    `load case, ${l.server}: ${READERS} readers and ${UPLOADS} uploads at once${seconds ? ` for ${seconds} s` : ''}, then the same with a render bomb stored (${BOMB_READERS} of the readers asking for it)`,
    `  ${l.readSet}`,
    `  stored before the load: ${l.prestored.instances} instances, ${(l.prestored.bytes / 1e6).toFixed(0)} MB in ${fixed(l.prestored.seconds, 1)} s`,
    ...(b
      ? ['error' in b ? `  render bomb: not stored: ${b.error}` : `  render bomb: ${BOMB_SIDE}×${BOMB_SIDE} 8-bit grey baseline JPEG of ${(b.jpegBytes / 1e6).toFixed(1)} MB as a Secondary Capture, stored in ${fixed(b.storeMs, 0)} ms`]
      : []),
    ...loadFailures(l).map((f) => `  failed: ${f}`),
    ...phases.flatMap((p, i) => (p ? firstProblems(p, i ? 'load + render bomb' : 'load') : [])),
    renderColumns(header, rows, header.map((_, i) => i >= 1 && i <= 5)),
  ].join('\n');
}

/** The first error and refusal of each kind, so that a MISS says what went wrong. */
function firstProblems(p: LoadPhase, name: string): string[] {
  return Object.entries(p.kinds).flatMap(([k, r]) => [
    ...(r.firstError
      ? [`  ${name}, ${KIND_LABELS[k as LoadKind]}: errors ${Object.entries(r.errorsBy).map(([what, n]) => `${what} ${n}`).join(', ')}; the first: ${r.firstError.slice(0, 300)}`]
      : []),
    ...(r.firstRefusal ? [`  ${name}, ${KIND_LABELS[k as LoadKind]}: first refusal: ${r.firstRefusal.slice(0, 300)}`] : []),
  ]);
}
