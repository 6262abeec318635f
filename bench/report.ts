import type { Throughput } from './limits.js';
import type { Latency } from './measure.js';
import { BACKEND_LABELS, servedPerFrameByte, type BackendResults } from './backends.js';
import { JUDGED, QIDO_SCALE_LINES, QIDO_SCALE_TARGET_MS, type QidoScaleLine, type QidoScaleResults } from './qido-scale.js';
import type { BackendName, Dialect, ServerName } from './settings.js';
import type { IngestResult } from './ingest.js';
import type { LoadResults } from './load.js';
import type { TranscodeResults } from './transcode.js';
import type { DimseResults } from './dimse.js';
import type { ByHandResults } from './by-hand.js';
import type { ReadResult } from './reads.js';
import { ACCESS_LINES, MAX_OVERHEAD, type AccessControlResults, type AuditCount } from './access.js';
import { RENDER_LINES, THUMBNAIL_TARGET_MS, type ImageFacts, type RenderDetail } from './rendered.js';

export type ServerResults = {
  version: string;
  ingest?: IngestResult;
  /** A sample of the corpus sent one instance per request, one request in flight, into a fresh store (ingest.ts). */
  ingestOneAtATime?: IngestResult;
  reads: Record<string, ReadResult>;
  error?: string;
  /** PACS-lite only: the reads with an API key, a viewer token and no credential (access.ts). */
  accessControl?: AccessControlResults | { error: string };
  /** PACS-lite only: the audit trail its index holds after the run. */
  audit?: AuditCount;
};

/** What failed, as opposed to what missed its target: a server, a read line, an access-control line. */
export function failuresOf(s: ServerResults): string[] {
  const ac = s.accessControl;
  return [
    ...(s.error ? [s.error] : []),
    ...Object.values(s.reads).flatMap((r) => ('error' in r ? [r.error] : [])),
    ...(ac && 'error' in ac ? [`access control: ${ac.error}`] : []),
    ...(ac && 'lines' in ac ? Object.values(ac.lines).flatMap((l) => (l && 'error' in l ? [`access control: ${l.error}`] : [])) : []),
  ];
}

export type BenchResults = {
  startedAt: string;
  machine: { cpus: number; cpuModel: string; memoryGiB: number; os: string; node: string; loadAverageAtStart: number[] };
  /** Absent when neither a server nor a backend ran (QIDO at scale alone). */
  corpus?: { origin: string; dir: string; instances: number; studies: number; bytes: number };
  scenario?: Record<string, string>;
  limits?: { copyWithFsync: Throughput; sha256: Throughput };
  servers: Partial<Record<ServerName, ServerResults>>;
  /** PACS-lite on each storage backend (backends.ts). */
  backends?: Partial<Record<BackendName, BackendResults>>;
  /** A JPEG-LS CT slice converted to Explicit VR Little Endian, uncached and cached (transcode.ts). */
  transcode?: TranscodeResults;
  /** storescu and findscu against both servers' DICOM services, and our STOW of the same corpus (dimse.ts). */
  dimse?: DimseResults;
  byHand?: ByHandResults;
  /** QIDO on a synthesised index of a million instances, by dialect (qido-scale.ts). */
  qidoScale?: Partial<Record<Dialect, QidoScaleResults>>;
  /** 45 readers and 5 uploads, then the same with a render bomb stored (load.ts). */
  load?: LoadResults;
  orthancConfig: unknown;
};

type Verdict = 'PASS' | 'MISS' | '';
type Row = { metric: string; pacs: string; orthanc: string; limit: string; ratio: string; target: string; result: Verdict };

/** A figure of each server, and how to compare them. */
type Figure = {
  metric: string;
  of: (s: ServerResults) => number | undefined;
  /** A rate (higher is better) or a time or cost (lower is better); omitted: no ratio is shown. */
  better?: 'higher' | 'lower';
  /** The ratio, "how many times better PACS-lite is", that passes; omitted: no target. */
  factor?: number;
  /** The ratio must exceed `factor` rather than reach it ("faster than"). */
  strictly?: boolean;
  target?: string;
  digits: number;
  /** Why a line could not be measured, if it could not. */
  error?: (s: ServerResults) => string | undefined;
};

/** The issue's targets, one line per figure; latency lines are judged on the median and on p95 alike. */
export function tableRows(r: BenchResults, labels: Record<string, string>): Row[] {
  const servers = { pacs: r.servers['pacs-lite'], orthanc: r.servers.orthanc };
  const row = (f: Figure) => comparedRow(f, servers.pacs, servers.orthanc);
  const limits = r.limits!;
  const raw = limits.copyWithFsync.mbPerSecond;
  const pacsIngest = servers.pacs?.ingest;
  const ofRaw = pacsIngest && pacsIngest.mbPerSecond / raw;
  const rows: Row[] = [
    limitRow('raw copy + fsync, MB/s', raw),
    limitRow('raw SHA-256 (one thread), MB/s', limits.sha256.mbPerSecond),
    row({ metric: 'STOW ingest, instances/s', of: (s) => s.ingest?.instancesPerSecond, better: 'higher', factor: 2, target: '≥ 2× Orthanc', digits: 0 }),
    {
      ...row({ metric: 'STOW ingest, MB/s', of: (s) => s.ingest?.mbPerSecond, digits: 1 }),
      limit: fixed(raw, 1),
      ratio: ofRaw === undefined ? '' : `${(ofRaw * 100).toFixed(0)}% of raw`,
      target: '≥ 70% of raw copy',
      result: verdict(ofRaw, 0.7),
    },
    {
      ...row({ metric: 'peak RSS during ingest, MB', of: (s) => s.ingest?.peakRssMB, digits: 0 }),
      target: 'PACS-lite < 300 MB',
      result: pacsIngest ? (pacsIngest.peakRssMB < 300 ? 'PASS' : 'MISS') : '',
    },
    row({ metric: 'STOW ingest one at a time, instances/s', of: (s) => s.ingestOneAtATime?.instancesPerSecond, better: 'higher', factor: 1.5, target: '≥ 1.5× Orthanc', digits: 0 }),
    row({ metric: 'STOW ingest one at a time, MB/s', of: (s) => s.ingestOneAtATime?.mbPerSecond, digits: 1 }),
    row({ metric: 'server CPU during ingest, s', of: (s) => s.ingest?.serverCpuSeconds, better: 'lower', digits: 1 }),
    row({ metric: 'bench client CPU during ingest, s', of: (s) => s.ingest?.clientCpuSeconds, digits: 1 }),
    row({ metric: 'all cores busy during ingest, %', of: (s) => s.ingest?.machine.busyPercent, digits: 0 }),
    row({ metric: 'cores waiting on disk (iowait), %', of: (s) => s.ingest?.machine.iowaitPercent, digits: 0 }),
  ];
  const latencyLines: Array<[key: string, factor: number, target: string]> = [
    ['seriesMetadata', 10, '≥ 10× faster'],
    ['seriesFrame', 1, 'no slower'],
    ['deepFrame', 10, '≥ 10× faster'],
    ['studyList', 5, '≥ 5× faster'],
    ['filteredStudyList', 5, '≥ 5× faster'],
  ];
  for (const [key, factor, target] of latencyLines) {
    if (!servers.pacs?.reads[key] && !servers.orthanc?.reads[key]) continue;
    const label = labels[key] ?? key;
    const latency = (s: ServerResults) => latencyOf(s.reads[key]);
    const error = (s: ServerResults) => errorOf(s.reads[key]);
    if (key === 'seriesMetadata') rows.push(row({ metric: `${label}, first call ms`, of: (s) => latency(s)?.firstMs, better: 'lower', digits: 1 }));
    rows.push(row({ metric: `${label}, median ms`, of: (s) => latency(s)?.medianMs, better: 'lower', factor, target, digits: 2, error }));
    rows.push(row({ metric: `${label}, p95 ms`, of: (s) => latency(s)?.p95Ms, better: 'lower', factor, target, digits: 2, error }));
  }
  // Rendering (rendered.ts): uncached lines against Orthanc, the cached thumbnail against a bound of its own.
  for (const key of RENDER_LINES) {
    if (!servers.pacs?.reads[key] && !servers.orthanc?.reads[key]) continue;
    const latency = (s: ServerResults) => latencyOf(s.reads[key]);
    const error = (s: ServerResults) => errorOf(s.reads[key]);
    const calls = [...new Set([servers.pacs, servers.orthanc].flatMap((s) => (s && latency(s) ? [latency(s)!.n] : [])))].join('/');
    const label = `${labels[key] ?? key}${calls ? ` (${calls} timed call${calls === '1' ? '' : 's'})` : ''}`;
    if (key !== 'thumbnail') {
      const target = 'faster than Orthanc';
      rows.push(row({ metric: `${label}, median ms`, of: (s) => latency(s)?.medianMs, better: 'lower', factor: 1, strictly: true, target, digits: 2, error }));
      rows.push(row({ metric: `${label}, p95 ms`, of: (s) => latency(s)?.p95Ms, better: 'lower', factor: 1, strictly: true, target, digits: 2, error }));
      continue;
    }
    const median = servers.pacs && latency(servers.pacs)?.medianMs;
    rows.push({
      ...row({ metric: `${label}, median ms`, of: (s) => latency(s)?.medianMs, better: 'lower', digits: 2, error }),
      target: `PACS-lite ≤ ${THUMBNAIL_TARGET_MS} ms`,
      result: servers.pacs && error(servers.pacs) ? 'MISS' : median === undefined ? '' : median <= THUMBNAIL_TARGET_MS ? 'PASS' : 'MISS',
    });
    rows.push(row({ metric: `${label}, p95 ms`, of: (s) => latency(s)?.p95Ms, better: 'lower', digits: 2, error }));
  }
  return rows;
}

/**
 * Below the table: what each server answered on the rendering lines (the resource, and the first image's size and
 * mean grey level, which shows how it was windowed), and the uncached lines' instances asked for a second time.
 */
export function describeRendering(r: BenchResults, labels: Record<string, string>): string | undefined {
  const lines: string[] = [];
  const kB = (n: number) => `${(n / 1000).toFixed(1)} kB`;
  const image = (f: ImageFacts | undefined) => (f ? `${f.width}×${f.height}, ${kB(f.bytes)}, mean grey ${f.meanGrey.toFixed(1)}` : 'no image');
  const servers = Object.entries(r.servers).map(([name, s]) => [name === 'pacs-lite' ? 'PACS-lite' : 'Orthanc', s] as const);
  for (const key of RENDER_LINES) {
    const details = servers.flatMap(([name, s]) => {
      const line = s.reads[key];
      return line && 'detail' in line && line.detail ? [[name, line.detail as RenderDetail] as const] : [];
    });
    if (!details.length) continue;
    lines.push(`  ${labels[key] ?? key}: ${details.map(([name, d]) => `${name} …/instances/{i}${d.endpoint}: ${image(d.firstImage)}`).join('; ')}`);
    const again = details.filter(([, d]) => d.askedAgainMs?.length);
    if (again.length) {
      const n = again[0]![1].askedAgainMs!.length;
      lines.push(`    asked for again afterwards (${n === 1 ? 'the timed instance' : `the first ${n} timed instances`}, not in the figures), median: ${again.map(([name, d]) => `${name} ${fixed(d.askedAgainMedianMs, 2)} ms`).join(', ')}`);
    }
  }
  return lines.length ? ['rendered images (Accept: image/jpeg; size, bytes and mean grey level of the first answer):', ...lines].join('\n') : undefined;
}

function limitRow(metric: string, value: number): Row {
  return { metric, pacs: '', orthanc: '', limit: fixed(value, 1), ratio: '', target: '', result: '' };
}

/** Both servers' figure, the ratio (PACS-lite/Orthanc for a rate, Orthanc/PACS-lite for a time) and its verdict. */
function comparedRow(f: Figure, pacs: ServerResults | undefined, orthanc: ServerResults | undefined): Row {
  const p = pacs && f.of(pacs);
  const o = orthanc && f.of(orthanc);
  const failed = (s: ServerResults | undefined) => (s && f.error?.(s) ? 'error' : undefined);
  const ratio = p === undefined || o === undefined || !f.better ? undefined : f.better === 'higher' ? p / o : o / p;
  const anyError = failed(pacs) ?? failed(orthanc);
  return {
    metric: f.metric,
    pacs: failed(pacs) ?? fixed(p, f.digits),
    orthanc: failed(orthanc) ?? fixed(o, f.digits),
    limit: '',
    ratio: ratio === undefined ? '' : `${ratio.toFixed(ratio < 10 ? 2 : 1)}×`,
    target: f.target ?? '',
    result: anyError ? 'MISS' : f.factor === undefined ? '' : verdict(ratio, f.factor, f.strictly),
  };
}

function verdict(value: number | undefined, atLeast: number, strictly = false): Verdict {
  return value === undefined ? '' : (strictly ? value > atLeast : value >= atLeast) ? 'PASS' : 'MISS';
}

function latencyOf(r: ReadResult | undefined): Latency | undefined {
  return r && 'medianMs' in r ? r : undefined;
}

function errorOf(r: ReadResult | undefined): string | undefined {
  return r && 'error' in r ? r.error : undefined;
}

export function fixed(value: number | undefined, digits: number): string {
  if (value === undefined || !Number.isFinite(value)) return '';
  return value.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function renderTable(rows: Row[]): string {
  const header: Row = { metric: 'metric', pacs: 'PACS-lite', orthanc: 'Orthanc', limit: 'limit', ratio: 'ratio', target: 'target', result: 'result' as Verdict };
  const columns = Object.keys(header) as Array<keyof Row>;
  const numeric = new Set<keyof Row>(['pacs', 'orthanc', 'limit', 'ratio']);
  return renderColumns(
    columns.map((c) => header[c]),
    rows.map((r) => columns.map((c) => r[c])),
    columns.map((c) => numeric.has(c)),
  );
}

/** A plain-text table: numbers to the right, text to the left. */
export function renderColumns(header: string[], rows: string[][], numeric: boolean[]): string {
  const widths = header.map((_, i) => Math.max(...[header, ...rows].map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => widths.map((w, i) => (numeric[i] ? (r[i] ?? '').padStart(w) : (r[i] ?? '').padEnd(w))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

/**
 * The cost of access control, below the main table: each read line with (a) an API key, (b) a viewer token,
 * (c) no credential, (d) a signed-in session, on one PACS-lite process; the overhead targets are on the median:
 * (a) and (b) against (c), (d) against (a) (issue 14). Then the audit trail.
 */
export function renderAccessControl(s: ServerResults | undefined, labels: Record<string, string>): string | undefined {
  const ac = s?.accessControl;
  const lines: string[] = [];
  if (ac && 'error' in ac) lines.push(`access control: not measured: ${ac.error}`);
  if (ac && 'lines' in ac) {
    lines.push(
      `access control, PACS-lite: ${ac.server}; viewer token for the study of the series, ${ac.viewerToken.characters} characters, sent as OHIF sends it (Authorization: Bearer); session of ${ac.session.login}, signed in at /login`,
    );
    const ratio = (x: number) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '');
    const rows: string[][] = [];
    for (const key of ACCESS_LINES) {
      const line = ac.lines[key];
      if (!line) continue;
      const label = labels[key] ?? key;
      if ('error' in line) {
        rows.push([`${label}`, 'error', 'error', 'error', 'error', '', '', '', `overhead ≤ ${MAX_OVERHEAD * 100}%`, 'MISS']);
        continue;
      }
      const { apiKey, viewerToken, session, anonymous } = line.latency;
      const worst = Math.max(line.keyOverAnonymous.median, line.tokenOverAnonymous.median, line.sessionOverKey.median);
      rows.push([
        `${label}, median ms`,
        fixed(apiKey.medianMs, 2),
        fixed(viewerToken.medianMs, 2),
        fixed(session.medianMs, 2),
        fixed(anonymous.medianMs, 2),
        ratio(line.keyOverAnonymous.median),
        ratio(line.tokenOverAnonymous.median),
        ratio(line.sessionOverKey.median),
        `overhead ≤ ${MAX_OVERHEAD * 100}%`,
        Number.isFinite(worst) ? (worst <= 1 + MAX_OVERHEAD ? 'PASS' : 'MISS') : '',
      ]);
      rows.push([
        `${label}, p95 ms`,
        fixed(apiKey.p95Ms, 2),
        fixed(viewerToken.p95Ms, 2),
        fixed(session.p95Ms, 2),
        fixed(anonymous.p95Ms, 2),
        ratio(line.keyOverAnonymous.p95),
        ratio(line.tokenOverAnonymous.p95),
        ratio(line.sessionOverKey.p95),
        '',
        '',
      ]);
      rows.push([`${label}, timed calls`, String(apiKey.n), String(viewerToken.n), String(session.n), String(anonymous.n), '', '', '', '', '']);
    }
    lines.push(
      renderColumns(
        ['metric', '(a) API key', '(b) viewer token', '(d) session', '(c) anonymous', '(a)/(c)', '(b)/(c)', '(d)/(a)', 'target', 'result'],
        rows,
        [false, true, true, true, true, true, true, true, false, false],
      ),
    );
  }
  if (s?.audit) lines.push(describeAudit(s.audit));
  return lines.length ? lines.join('\n') : undefined;
}

function describeAudit(a: AuditCount): string {
  const counts = (m: Record<string, number>) => Object.entries(m).map(([k, n]) => `${k} ${n.toLocaleString('en-US')}`).join(', ');
  const head = `audit trail: ${a.rows.toLocaleString('en-US')} rows in audit_events for ${a.requests.toLocaleString('en-US')} requests (by credential: ${counts(a.rowsByCredential)}; by status: ${counts(a.rowsByStatus)})`;
  if (!a.expected) return `${head}; not checked: a phase failed, so what it should hold is unknown`;
  return [
    head,
    `  the benchmark got answers to ${a.expected.requests.toLocaleString('en-US')} requests, which make ${a.expected.rows.toLocaleString('en-US')} rows (a STOW writes one per study it stores into; by credential: ${counts(a.expected.rowsByCredential)}): ${a.complete ? 'PASS, every request recorded' : 'MISS'}`,
  ].join('\n');
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
    ...(r.corpus
      ? [`corpus: ${r.corpus.instances.toLocaleString('en-US')} instances in ${r.corpus.studies.toLocaleString('en-US')} studies, ${(r.corpus.bytes / 1e9).toFixed(2)} GB (${r.corpus.origin}) at ${r.corpus.dir}`]
      : []),
    ...Object.entries(r.scenario ?? {}).map(([k, v]) => `${k}: ${v}`),
  ].join('\n');
}

/** What failed on a backend (as opposed to a figure that missed). */
export function backendFailures(b: BackendResults): string[] {
  return [...(b.error ? [b.error] : []), ...Object.entries(b.reads).flatMap(([key, r]) => ('error' in r ? [`${key}: ${r.error}`] : []))];
}

/** What failed in QIDO at scale on a dialect. */
export function qidoScaleFailures(q: QidoScaleResults): string[] {
  return [...(q.error ? [q.error] : []), ...Object.entries(q.lines).flatMap(([key, l]) => (l && 'error' in l ? [`${key}: ${l.error}`] : []))];
}

/** Read lines of the backends table, in order. */
const BACKEND_READS = ['seriesMetadata', 'seriesFrame', 'deepFrame', 'studyList', 'filteredStudyList'];
/** Bytes served for a frame line within this of the frames' bytes: ranged reads, nothing more. */
const RANGED_TOLERANCE = 0.05;

/**
 * PACS-lite on each storage backend, one column each: ingest, the read lines, and for S3 what s3rver served,
 * which shows that frames come from ranged reads (bytes served ÷ bytes of the frames answered ≈ 1).
 */
export function renderBackends(backends: Partial<Record<BackendName, BackendResults>>, labels: Record<string, string>): string {
  const list = Object.values(backends);
  const header = ['metric', ...list.map((b) => BACKEND_LABELS[b.backend]), 'target', 'result'];
  const rows: string[][] = [];
  const figure = (metric: string, of: (b: BackendResults) => number | undefined, digits: number, target = '', result = '') =>
    rows.push([metric, ...list.map((b) => (b.error && of(b) === undefined ? 'error' : fixed(of(b), digits))), target, result]);
  figure('STOW ingest, instances/s', (b) => b.ingest?.instancesPerSecond, 0);
  figure('STOW ingest, MB/s', (b) => b.ingest?.mbPerSecond, 1);
  figure('peak RSS of PACS-lite during ingest, MB', (b) => b.ingest?.peakRssMB, 0);
  figure('PACS-lite CPU during ingest, s', (b) => b.ingest?.serverCpuSeconds, 1);
  if (list.some((b) => b.s3)) {
    figure('s3rver CPU during ingest, s', (b) => b.s3?.ingestCpuSeconds, 1);
    figure('s3rver requests during ingest', (b) => b.s3?.ingest.requests, 0);
  }
  if (list.some((b) => b.postgresIngestCpuSeconds !== undefined)) figure('Postgres CPU during ingest, s', (b) => b.postgresIngestCpuSeconds, 1);
  figure('all cores busy during ingest, %', (b) => b.ingest?.machine.busyPercent, 0);
  for (const key of BACKEND_READS) {
    if (!list.some((b) => b.reads[key])) continue;
    const label = labels[key] ?? key;
    const latency = (b: BackendResults) => latencyOf(b.reads[key]);
    rows.push([`${label}, median ms`, ...list.map((b) => (errorOf(b.reads[key]) ? 'error' : fixed(latency(b)?.medianMs, 2))), '', '']);
    rows.push([`${label}, p95 ms`, ...list.map((b) => (errorOf(b.reads[key]) ? 'error' : fixed(latency(b)?.p95Ms, 2))), '', '']);
    const s3 = list.filter((b) => b.s3?.lines[key]?.frames);
    if (!s3.length) continue;
    // Frame lines on S3: GETs per frame, and the bytes s3rver served over the bytes of the frames answered.
    const perFrame = (b: BackendResults) => {
      const t = b.s3?.lines[key];
      return t?.frames ? `${((t.gets.ranged + t.gets.whole) / t.frames).toFixed(2)}${t.gets.whole ? ` (${t.gets.whole} whole)` : ' ranged'}` : '';
    };
    rows.push([`${label}: s3rver GETs per frame`, ...list.map(perFrame), '', '']);
    const ratio = (b: BackendResults) => servedPerFrameByte(b.s3?.lines[key]);
    const ok = s3.every((b) => b.s3!.lines[key]!.gets.whole === 0 && Math.abs(ratio(b)! - 1) <= RANGED_TOLERANCE);
    rows.push([`${label}: bytes s3rver served ÷ (frames × frame size)`, ...list.map((b) => fixed(ratio(b), 3)), '≈ 1 (ranged reads)', ok ? 'PASS' : 'MISS']);
  }
  const frameSizes = list.flatMap((b) =>
    Object.entries(b.s3?.lines ?? {}).flatMap(([key, t]) => (t.frames ? [`${labels[key] ?? key}: ${t.frames} frames of ${(t.frameBytes! / t.frames / 1024).toFixed(0)} KiB`] : [])),
  );
  return [
    `storage backends, PACS-lite (the same corpus and read lines${list.some((b) => b.s3) ? '; S3 is s3rver, a test server: file-backed, single-threaded JavaScript, no fsync' : ''}):`,
    ...list.map((b) => `  ${BACKEND_LABELS[b.backend]}: ${b.setup}`),
    ...(frameSizes.length ? [`  frames asked for on S3, per backend: ${[...new Set(frameSizes)].join('; ')}`] : []),
    renderColumns(header, rows, header.map((_, i) => i > 0 && i <= list.length)),
  ].join('\n');
}

const QIDO_SCALE_LABELS: Record<QidoScaleLine, string> = {
  studyList: 'OHIF study list (limit=101, no filter)',
  patientId: 'PatientID lookup (/studies?PatientID=…)',
  ohifPatientId: 'MRN typed in OHIF (00100020=*…*, study-list parameters)',
  nameAndDate: 'name *oss* + StudyDate of a year (study-list parameters)',
};
const DIALECT_LABELS: Record<Dialect, string> = { sqlite: 'SQLite', pg: 'Postgres' };

/** QIDO at scale: each line on each dialect, the verdicts, then the plans the databases chose. */
export function renderQidoScale(scale: Partial<Record<Dialect, QidoScaleResults>>): string {
  const list = Object.values(scale);
  const first = list.find((q) => q.counts.instances > 0) ?? list[0]!;
  const n = (x: number) => x.toLocaleString('en-US');
  const c = first.counts;
  const lines = [
    `QIDO at scale: ${n(c.instances)} instances in ${n(c.series)} series and ${n(c.studies)} studies of ${n(c.patients)} patients, synthesised into each index ` +
      `(rows made here by the server's rowsOf, written with SQL in batches into the schema the server migrated, then the server started on it)`,
    `  stored JSON: study ${fixed(first.json.studyMean, 0)} bytes on average (${first.json.studyMin}–${first.json.studyMax}), series ${fixed(first.json.seriesMean, 0)}, instance ${fixed(first.json.instanceMean, 0)}`,
    ...list.map((q) => `  ${DIALECT_LABELS[q.dialect]}: ${q.index}${q.triedSql ? `; BENCH_QIDO_TRY_SQL was run on it first: ${q.triedSql}` : ''}`),
  ];
  const header = ['metric', ...list.map((q) => DIALECT_LABELS[q.dialect]), 'target', ...list.map((q) => `${DIALECT_LABELS[q.dialect]} result`)];
  const rows: string[][] = [];
  const blank = list.map(() => '');
  const errored = (q: QidoScaleResults) => (q.error && !q.fill.seconds ? 'error' : undefined);
  rows.push(['rows made and written, s', ...list.map((q) => errored(q) ?? fixed(q.fill.seconds, 0)), '', ...blank]);
  rows.push(['then VACUUM ANALYZE (Postgres), s', ...list.map((q) => (q.dialect === 'pg' ? fixed(q.fill.afterSeconds, 0) : '')), '', ...blank]);
  rows.push(['index on disk, GB', ...list.map((q) => fixed(q.indexBytes / 1e9, 2)), '', ...blank]);
  for (const key of QIDO_SCALE_LINES) {
    if (!list.some((q) => q.lines[key])) continue;
    const line = (q: QidoScaleResults) => q.lines[key];
    const latency = (q: QidoScaleResults) => {
      const l = line(q);
      return l && 'medianMs' in l ? l : undefined;
    };
    const value = (q: QidoScaleResults, of: (l: Latency) => number, digits = 2) => (line(q) && 'error' in line(q)! ? 'error' : fixed(latency(q) && of(latency(q)!), digits));
    const judged = JUDGED.has(key);
    const label = QIDO_SCALE_LABELS[key];
    rows.push([`${label}, median ms`, ...list.map((q) => value(q, (l) => l.medianMs)), '', ...blank]);
    rows.push([
      `${label}, p95 ms`,
      ...list.map((q) => value(q, (l) => l.p95Ms)),
      judged ? `< ${QIDO_SCALE_TARGET_MS} ms` : 'shown, not judged',
      ...list.map((q) => {
        if (!judged) return '';
        if (!line(q) || (line(q) && 'error' in line(q)!)) return 'MISS';
        return latency(q)!.p95Ms < QIDO_SCALE_TARGET_MS ? 'PASS' : 'MISS';
      }),
    ]);
    rows.push([`${label}, the SQL alone, median ms`, ...list.map((q) => fixed(latency(q)?.sqlAloneMedianMs, 2)), '', ...blank]);
    rows.push([`${label}, timed calls`, ...list.map((q) => (latency(q) ? String(latency(q)!.n) : '')), '', ...blank]);
  }
  lines.push(renderColumns(header, rows, header.map((_, i) => i > 0 && i <= list.length)));
  const plans: string[] = [];
  for (const q of list) {
    for (const key of QIDO_SCALE_LINES) {
      const l = q.lines[key];
      if (!l || !('plan' in l) || !l.plan) continue;
      plans.push(`  ${DIALECT_LABELS[q.dialect]}, ${QIDO_SCALE_LABELS[key]}: ${q.dialect === 'pg' ? 'EXPLAIN (ANALYZE, BUFFERS)' : 'EXPLAIN QUERY PLAN'}`);
      plans.push(...l.plan.map((p) => `    ${p}`));
    }
  }
  if (plans.length) lines.push('', 'query plans (the SQL the server runs for each line, captured from its SqlCatalog):', ...plans);
  return lines.join('\n');
}
