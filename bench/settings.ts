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
  /** Which servers to run, e.g. `pacs-lite` alone while developing. */
  BENCH_SERVERS: z.string().default('pacs-lite,orthanc'),
  /** `1` records a V8 CPU profile of the PACS-lite server and prints where its time went. */
  BENCH_PROFILE: z.enum(['0', '1']).default('0'),
  BENCH_OUT_DIR: z.string().min(1).default(path.join(ROOT, 'bench/out')),
  /** Debian's orthanc and orthanc-dicomweb packages by default. */
  BENCH_ORTHANC: z.string().min(1).default('/usr/sbin/Orthanc'),
  BENCH_ORTHANC_DICOMWEB: z.string().min(1).default('/usr/share/orthanc/plugins/libOrthancDicomWeb.so'),
});

export type ServerName = 'pacs-lite' | 'orthanc';

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
}>;

/** The only place the benchmark reads the environment; a bad value stops it with every problem named. */
export function readSettings(env: NodeJS.ProcessEnv = process.env): Settings {
  const known = Object.fromEntries(Object.keys(schema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    throw new Error(`Invalid benchmark settings:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  }
  const e = parsed.data;
  const servers = e.BENCH_SERVERS.split(',').map((s) => s.trim()).filter(Boolean);
  const unknown = servers.filter((s) => s !== 'pacs-lite' && s !== 'orthanc');
  if (unknown.length || servers.length === 0) throw new Error(`BENCH_SERVERS lists pacs-lite and/or orthanc, not "${e.BENCH_SERVERS}"`);
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
  });
}
