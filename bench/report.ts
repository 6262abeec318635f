import type { Throughput } from './limits.js';
import type { Latency } from './measure.js';
import type { ServerName } from './settings.js';
import type { IngestResult } from './ingest.js';
import type { ReadResult } from './reads.js';

export type ServerResults = { version: string; ingest?: IngestResult; reads: Record<string, ReadResult>; error?: string };

export type BenchResults = {
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; os: string; node: string; loadAverageAtStart: number[] };
  corpus: { origin: string; dir: string; instances: number; studies: number; bytes: number };
  scenario: Record<string, string>;
  limits: { copyWithFsync: Throughput; sha256: Throughput };
  servers: Partial<Record<ServerName, ServerResults>>;
  orthancConfig: unknown;
};

type Verdict = 'PASS' | 'MISS' | '';
type Row = { metric: string; pacs: string; orthanc: string; limit: string; ratio: string; target: string; result: Verdict };

/** The issue's targets, one line per figure; latency lines are judged on the median and on p95 alike. */
export function tableRows(r: BenchResults, labels: Record<string, string>): Row[] {
  const pacs = r.servers['pacs-lite'];
  const orthanc = r.servers.orthanc;
  const rows: Row[] = [
    limitRow('raw copy + fsync, MB/s', r.limits.copyWithFsync.mbPerSecond),
    limitRow('raw SHA-256 (one thread), MB/s', r.limits.sha256.mbPerSecond),
  ];
  const ingestOf = (s?: ServerResults) => s?.ingest;
  rows.push(
    compared('STOW ingest, instances/s', ingestOf(pacs)?.instancesPerSecond, ingestOf(orthanc)?.instancesPerSecond, 'higher', 2, '≥ 2× Orthanc', 0),
  );
  const pacsMBs = ingestOf(pacs)?.mbPerSecond;
  const ofRaw = pacsMBs === undefined ? undefined : pacsMBs / r.limits.copyWithFsync.mbPerSecond;
  rows.push({
    metric: 'STOW ingest, MB/s',
    pacs: fixed(pacsMBs, 1),
    orthanc: fixed(ingestOf(orthanc)?.mbPerSecond, 1),
    limit: fixed(r.limits.copyWithFsync.mbPerSecond, 1),
    ratio: ofRaw === undefined ? '' : `${(ofRaw * 100).toFixed(0)}% of raw`,
    target: '≥ 70% of raw copy',
    result: ofRaw === undefined ? '' : ofRaw >= 0.7 ? 'PASS' : 'MISS',
  });
  const pacsRss = ingestOf(pacs)?.peakRssMB;
  rows.push({
    metric: 'peak RSS during ingest, MB',
    pacs: fixed(pacsRss, 0),
    orthanc: fixed(ingestOf(orthanc)?.peakRssMB, 0),
    limit: '',
    ratio: '',
    target: 'PACS-lite < 300 MB',
    result: pacsRss === undefined ? '' : pacsRss < 300 ? 'PASS' : 'MISS',
  });
  rows.push(compared('server CPU during ingest, s', ingestOf(pacs)?.serverCpuSeconds, ingestOf(orthanc)?.serverCpuSeconds, 'lower', undefined, '', 1));
  rows.push(compared('bench client CPU during ingest, s', ingestOf(pacs)?.clientCpuSeconds, ingestOf(orthanc)?.clientCpuSeconds, 'lower', undefined, '', 1, undefined, false));
  rows.push(compared('all cores busy during ingest, %', ingestOf(pacs)?.machine.busyPercent, ingestOf(orthanc)?.machine.busyPercent, 'lower', undefined, '', 0, undefined, false));
  rows.push(compared('cores waiting on disk (iowait), %', ingestOf(pacs)?.machine.iowaitPercent, ingestOf(orthanc)?.machine.iowaitPercent, 'lower', undefined, '', 0, undefined, false));

  const latencyLines: Array<[key: string, factor: number, target: string]> = [
    ['seriesMetadata', 10, '≥ 10× faster'],
    ['seriesFrame', 1, 'no slower'],
    ['deepFrame', 10, '≥ 10× faster'],
    ['studyList', 5, '≥ 5× faster'],
    ['filteredStudyList', 5, '≥ 5× faster'],
  ];
  for (const [key, factor, target] of latencyLines) {
    const p = pacs?.reads[key];
    const o = orthanc?.reads[key];
    if (!p && !o) continue;
    const label = labels[key] ?? key;
    if (key === 'seriesMetadata') rows.push(compared(`${label}, first call ms`, latencyOf(p)?.firstMs, latencyOf(o)?.firstMs, 'lower', undefined, '', 1));
    rows.push(compared(`${label}, median ms`, latencyOf(p)?.medianMs, latencyOf(o)?.medianMs, 'lower', factor, target, 2, errorOf(p) ?? errorOf(o)));
    rows.push(compared(`${label}, p95 ms`, latencyOf(p)?.p95Ms, latencyOf(o)?.p95Ms, 'lower', factor, target, 2, errorOf(p) ?? errorOf(o)));
  }
  return rows;
}

function limitRow(metric: string, value: number): Row {
  return { metric, pacs: '', orthanc: '', limit: fixed(value, 1), ratio: '', target: '', result: '' };
}

/**
 * A figure of both servers. The ratio is always "how many times better PACS-lite is": PACS-lite/Orthanc
 * for a rate, Orthanc/PACS-lite for a time. With `factor`, the ratio is judged against it.
 */
function compared(
  metric: string,
  pacs: number | undefined,
  orthanc: number | undefined,
  better: 'higher' | 'lower',
  factor: number | undefined,
  target: string,
  digits: number,
  error?: string,
  showRatio = true,
): Row {
  const ratio = !showRatio || pacs === undefined || orthanc === undefined ? undefined : better === 'higher' ? pacs / orthanc : orthanc / pacs;
  const result: Verdict = error ? 'MISS' : ratio === undefined || factor === undefined ? '' : ratio >= factor ? 'PASS' : 'MISS';
  return {
    metric,
    pacs: error && pacs === undefined ? 'error' : fixed(pacs, digits),
    orthanc: error && orthanc === undefined ? 'error' : fixed(orthanc, digits),
    limit: '',
    ratio: ratio === undefined ? '' : `${ratio.toFixed(ratio < 10 ? 2 : 1)}×`,
    target,
    result,
  };
}

function latencyOf(r: ReadResult | undefined): Latency | undefined {
  return r && 'medianMs' in r ? r : undefined;
}

function errorOf(r: ReadResult | undefined): string | undefined {
  return r && 'error' in r ? r.error : undefined;
}

function fixed(value: number | undefined, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return '';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function renderTable(rows: Row[]): string {
  const header: Row = { metric: 'metric', pacs: 'PACS-lite', orthanc: 'Orthanc', limit: 'limit', ratio: 'ratio', target: 'target', result: 'result' as Verdict };
  const columns = Object.keys(header) as Array<keyof Row>;
  const widths = columns.map((c) => Math.max(...[header, ...rows].map((r) => r[c].length)));
  const numeric = new Set<keyof Row>(['pacs', 'orthanc', 'limit', 'ratio']);
  const line = (r: Row) => columns.map((c, i) => (numeric.has(c) ? r[c].padStart(widths[i]!) : r[c].padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/** Below the table: which threads of each server did the ingest work. */
export function describeIngestThreads(r: BenchResults): string {
  return Object.entries(r.servers)
    .flatMap(([name, s]) => {
      const threads = Object.entries(s.ingest?.serverCpuByThread ?? {}).filter(([, seconds]) => seconds >= 0.05);
      return threads.length ? [`${name} CPU during ingest by thread: ${threads.map(([t, seconds]) => `${t} ${seconds.toFixed(1)} s`).join(', ')}`] : [];
    })
    .join('\n');
}

/** The lines above the table: what ran, on what. */
export function describeRun(r: BenchResults): string {
  const m = r.machine;
  const versions = Object.values(r.servers).map((s) => s.version);
  return [
    `machine: ${m.cpus} × ${m.cpuModel}, ${m.memoryGiB.toFixed(1)} GiB RAM, ${m.os}, Node ${m.node}; load average at start ${m.loadAverageAtStart.map((l) => l.toFixed(2)).join(' ')}`,
    ...versions.map((v) => `server: ${v}`),
    `corpus: ${r.corpus.instances.toLocaleString('en-US')} instances in ${r.corpus.studies.toLocaleString('en-US')} studies, ${(r.corpus.bytes / 1e9).toFixed(2)} GB (${r.corpus.origin}) at ${r.corpus.dir}`,
    ...Object.entries(r.scenario).map(([k, v]) => `${k}: ${v}`),
  ].join('\n');
}
