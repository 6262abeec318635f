/**
 * Images in and out by hand (issue 15's targets). The whole corpus uploaded through the resumable path (tus, small
 * files in bundles and larger ones alone, as the upload page sends them) against STOW-RS of the same files into a fresh server in the same run:
 * ≥ 80% of STOW's instances/s. The corpus's longest series downloaded as a ZIP, under readable names and as a CD's
 * file-set with its DICOMDIR, against reading its files from the page cache (the physical limit): ≥ 80% of it, the
 * server's memory flat. `npm run bench -- by-hand` runs it alone. See bench/README.md.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import * as tus from 'tus-js-client';
import type { Corpus } from './corpus.js';
import { BUNDLE_FILES, BUNDLE_PART_BYTES, CHUNK_BYTES } from '../src/api/resumable.js';
import { stowBody } from './http.js';
import { ingest, REQUESTS_IN_FLIGHT } from './ingest.js';
import { checkInterrupted } from './interrupt.js';
import { throughput, type Throughput } from './limits.js';
import { resetPeakRss, statusField } from './measure.js';
import { randomAdminKey, startPacsLite } from './pacs-lite.js';
import { fixed, renderColumns } from './report.js';
import { scenarioOf } from './scenario.js';
import type { RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

/** The issue's targets: a download at least this share of the raw read speed of its files; resumable uploads of STOW's instances/s. */
const OF_RAW_READ = 0.8;
const OF_STOW = 0.8;
/** Memory the server may grow by while it sends, whatever the series' size: "flat". */
const FLAT_MB = 64;

type Download = Throughput & { peakGrowthMB: number };
type Uploads = Throughput & { instances: number; instancesPerSecond: number };
export type ByHandResults = {
  server: string;
  /** The whole corpus: by STOW-RS and by resumable uploads, each into a fresh server. */
  stow?: Uploads;
  resumable?: Uploads & { peakRssMB: number };
  /** The longest series. */
  instances: number;
  bytes: number;
  downloads: number;
  rawRead?: Throughput;
  /** Read and SHA-256 of its files: what the server must do at the least, checking each file as it sends it. */
  readAndHash?: Throughput;
  readable?: Download;
  media?: Download;
  error?: string;
};

/** What failed (as opposed to a figure that missed its target). */
export function byHandFailures(r: ByHandResults): string[] {
  return r.error ? [`in and out by hand: ${r.error}`] : [];
}

export async function byHandCase(opts: { settings: Settings; workDir: string; corpus: Corpus; log: (line: string) => void; running: Set<RunningServer> }): Promise<ByHandResults> {
  const { settings, corpus, log } = opts;
  const { series } = scenarioOf(corpus);
  const bytes = series.instances.reduce((sum, i) => sum + i.size, 0);
  const results: ByHandResults = { server: '', instances: series.instances.length, bytes, downloads: settings.byHandReps };
  const dir = path.join(opts.workDir, 'by-hand');
  await fs.mkdir(dir, { recursive: true });
  const start = async (name: string) => {
    const server = await startPacsLite(settings, path.join(dir, name), { adminKey: randomAdminKey() });
    opts.running.add(server);
    return server;
  };
  const stop = async (server: RunningServer) => {
    await server.stop();
    opts.running.delete(server);
  };
  try {
    const resumableServer = await start('resumable');
    try {
      results.server = resumableServer.version;
      log(`by hand: the corpus by resumable uploads, ${REQUESTS_IN_FLIGHT} at once`);
      results.resumable = await resumableUploads(resumableServer, corpus);
    } finally {
      await stop(resumableServer);
    }
    checkInterrupted();
  } catch (e) {
    checkInterrupted();
    results.error = (e as Error).message;
    log(`by hand failed: ${results.error}`);
  }
  const server = await start('stow');
  try {
    log('by hand: the same corpus by STOW-RS into a fresh server');
    const stowed = await ingest(server, corpus, log);
    results.stow = { seconds: stowed.seconds, bytes: stowed.bytes, mbPerSecond: stowed.mbPerSecond, instances: stowed.instances, instancesPerSecond: stowed.instancesPerSecond };
    const files = series.instances.map((i) => path.join(corpus.dir, i.file));
    const api = server.dicomweb.replace(/\/dicom-web$/, '');
    // Interleaved, so that whatever else the machine does falls on every line alike; each line's median.
    const samples: Record<'rawRead' | 'readAndHash' | 'readable' | 'media', Download[]> = { rawRead: [], readAndHash: [], readable: [], media: [] };
    for (let call = 0; call <= settings.byHandReps; call++) {
      checkInterrupted();
      const raw = await readAll(files);
      const hashed = await readAll(files, true);
      const readable = await download(server, `${api}/api/v1/studies/${series.studyUid}/download`, bytes);
      const media = await download(server, `${api}/api/v1/studies/${series.studyUid}/download?layout=media`, bytes);
      // The first call of each line warms caches: untimed.
      if (call === 0) continue;
      samples.rawRead.push({ ...raw, peakGrowthMB: 0 });
      samples.readAndHash.push({ ...hashed, peakGrowthMB: 0 });
      samples.readable.push(readable);
      samples.media.push(media);
    }
    const median = (list: Download[]) => [...list].sort((a, b) => a.mbPerSecond - b.mbPerSecond)[Math.floor(list.length / 2)]!;
    const { peakGrowthMB: _none, ...rawRead } = median(samples.rawRead);
    results.rawRead = rawRead;
    const { peakGrowthMB: _nothing, ...readAndHash } = median(samples.readAndHash);
    results.readAndHash = readAndHash;
    results.readable = { ...median(samples.readable), peakGrowthMB: Math.max(...samples.readable.map((d) => d.peakGrowthMB)) };
    results.media = { ...median(samples.media), peakGrowthMB: Math.max(...samples.media.map((d) => d.peakGrowthMB)) };
    log(`by hand: ZIP ${results.readable.mbPerSecond.toFixed(0)} MB/s against a raw read of ${rawRead.mbPerSecond.toFixed(0)} MB/s`);
  } catch (e) {
    checkInterrupted();
    results.error = [results.error, (e as Error).message].filter(Boolean).join('; ');
    log(`by hand failed: ${(e as Error).message}`);
  } finally {
    await stop(server);
    await fs.rm(dir, { recursive: true, force: true });
  }
  return results;
}


/**
 * The corpus as the upload page sends it: small files in bundles (a STOW-RS body, one tus upload each), a larger
 * file alone, each up to a chunk whole in the request that creates it; REQUESTS_IN_FLIGHT uploads at once, every
 * file's answer checked; the server's peak memory.
 */
async function resumableUploads(server: RunningServer, corpus: Corpus): Promise<Uploads & { peakRssMB: number }> {
  const endpoint = `${server.dicomweb.replace(/\/dicom-web$/, '')}/api/v1/resumable`;
  const jobs: Corpus['instances'][] = [];
  let bytes = Infinity;
  for (const instance of corpus.instances) {
    const alone = instance.size + BUNDLE_PART_BYTES > CHUNK_BYTES;
    if (alone || jobs.length === 0 || jobs.at(-1)!.length === BUNDLE_FILES || bytes + instance.size + BUNDLE_PART_BYTES > CHUNK_BYTES) {
      jobs.push([]);
      bytes = alone ? Infinity : 0;
    }
    jobs.at(-1)!.push(instance);
    bytes += instance.size + BUNDLE_PART_BYTES;
  }
  await resetPeakRss(server.pid);
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < jobs.length; i = next++) {
      const job = jobs[i]!;
      const files = await Promise.all(job.map((instance) => fs.readFile(path.join(corpus.dir, instance.file))));
      const bundle = job.length > 1 ? stowBody(files) : undefined;
      const body = bundle ? Buffer.concat(bundle.pieces) : files[0]!;
      const answer = await new Promise<{ files?: Array<{ status: string; reason: string | null }>; status?: string; reason?: string | null }>((resolve, reject) => {
        new tus.Upload(body, {
          endpoint,
          headers: { ...server.auth },
          chunkSize: CHUNK_BYTES,
          uploadDataDuringCreation: true,
          metadata: bundle ? { filetype: bundle.contentType, filenames: JSON.stringify(job.map((f) => f.file)) } : { filename: job[0]!.file },
          retryDelays: null,
          storeFingerprintForResuming: false,
          onSuccess: (payload) => resolve(JSON.parse(payload.lastResponse.getBody())),
          onError: reject,
        }).start();
      });
      (answer.files ?? [answer]).forEach((a, n) => {
        if (a.status !== 'stored') throw new Error(`${job[n]!.file} by resumable upload: ${a.status} ${a.reason ?? ''}`);
      });
    }
  };
  await Promise.all(Array.from({ length: REQUESTS_IN_FLIGHT }, worker));
  const result = throughput(corpus.bytes, performance.now() - started);
  return { ...result, instances: corpus.instances.length, instancesPerSecond: corpus.instances.length / result.seconds, peakRssMB: (await statusField(server.pid, 'VmHWM')) / 1024 };
}

/**
 * Every file read whole, one after another, from the page cache the corpus was warmed into; with `hash`, each also
 * through SHA-256, as the server checks every file it sends against its recorded checksum.
 */
async function readAll(files: string[], hash = false): Promise<Throughput> {
  const started = performance.now();
  let bytes = 0;
  for (const file of files) {
    const data = await fs.readFile(file);
    if (hash) createHash('sha256').update(data).digest();
    bytes += data.length;
  }
  return throughput(bytes, performance.now() - started);
}

/**
 * One download by plain node:http, counted as it streams (never held), with the server's peak memory growth while it
 * sent: fetch's web streams would cost the client more than the server's sending, on the same two cores.
 */
async function download(server: RunningServer, url: string, atLeast: number): Promise<Download> {
  const before = await statusField(server.pid, 'VmRSS');
  await resetPeakRss(server.pid);
  const started = performance.now();
  const { status, contentType, bytes } = await new Promise<{ status: number; contentType: string | undefined; bytes: number }>((resolve, reject) => {
    http
      .get(url, { headers: server.auth }, (res) => {
        let bytes = 0;
        res.on('data', (chunk: Buffer) => (bytes += chunk.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], bytes }));
        res.on('error', reject);
      })
      .on('error', reject);
  });
  const ms = performance.now() - started;
  if (status !== 200 || contentType !== 'application/zip') throw new Error(`${url} answered ${status} ${contentType}`);
  // Stored, not compressed: a ZIP holds every file whole, and its headers besides.
  if (bytes < atLeast) throw new Error(`${url} sent ${bytes} bytes, fewer than the ${atLeast} of its files`);
  const peak = await statusField(server.pid, 'VmHWM');
  return { ...throughput(bytes, ms), peakGrowthMB: Math.max(0, peak - before) / 1024 };
}

export function renderByHand(r: ByHandResults): string {
  const header = ['metric', 'MB/s', 'of raw read', 'target', 'server peak growth', 'target', 'result'];
  const rows: string[][] = [];
  const raw = r.rawRead?.mbPerSecond;
  rows.push(['raw read of its files (the limit)', fixed(raw, 0), '', '', '', '', '']);
  if (r.readAndHash && raw) rows.push(['read and SHA-256 of its files, one thread', fixed(r.readAndHash.mbPerSecond, 0), `${((r.readAndHash.mbPerSecond / raw) * 100).toFixed(0)}%`, '', '', '', '']);
  for (const [label, d] of [['ZIP, readable names', r.readable], ['ZIP, CD file-set with DICOMDIR', r.media]] as const) {
    if (!d || raw === undefined) continue;
    const share = d.mbPerSecond / raw;
    const pass = share >= OF_RAW_READ && d.peakGrowthMB <= FLAT_MB;
    rows.push([label, fixed(d.mbPerSecond, 0), `${(share * 100).toFixed(0)}%`, `≥ ${OF_RAW_READ * 100}%`, `${fixed(d.peakGrowthMB, 1)} MB`, `≤ ${FLAT_MB} MB`, pass ? 'PASS' : 'MISS']);
  }
  const uploads: string[][] = [];
  if (r.resumable && r.stow) {
    const share = r.resumable.instancesPerSecond / r.stow.instancesPerSecond;
    uploads.push([`resumable uploads (tus), bundles of up to ${BUNDLE_FILES}, ${REQUESTS_IN_FLIGHT} at once`, fixed(r.resumable.instancesPerSecond, 0), fixed(r.resumable.mbPerSecond, 1), `${(share * 100).toFixed(0)}%`, `≥ ${OF_STOW * 100}% of STOW`, share >= OF_STOW ? 'PASS' : 'MISS']);
    uploads.push([`STOW-RS, 10 a request, ${REQUESTS_IN_FLIGHT} requests in flight`, fixed(r.stow.instancesPerSecond, 0), fixed(r.stow.mbPerSecond, 1), '', '', '']);
  }
  return [
    `Images in and out by hand, PACS-lite${r.server ? ` (${r.server})` : ''}:`,
    ...(uploads.length ? [`  the whole corpus (${r.stow!.instances} instances) into a fresh server each way; resumable peak RSS ${fixed(r.resumable!.peakRssMB, 0)} MB`, renderColumns(['upload', 'instances/s', 'MB/s', 'of STOW', 'target', 'result'], uploads, [false, true, true, true, false, false]), ''] : []),
    `  the longest series of the corpus, ${r.instances} instances, ${fixed(r.bytes / 1e6, 0)} MB, from the server STOW-RS filled; GET /api/v1/studies/{study}/download`,
    `  (and ?layout=media) streamed and counted, ${r.downloads} timed calls each after an untimed one, interleaved with reading its files from the page cache; medians`,
    ...(r.error ? [`  failed: ${r.error}`] : []),
    ...(r.readable ? [renderColumns(header, rows, [false, true, true, false, true, false, false])] : []),
  ].join('\n');
}
