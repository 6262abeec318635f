import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { expectedFrame, type Corpus, type CorpusInstance } from './corpus.js';
import { decodedBody, dropConnections, multipartParts, request, stowBody, type Reply } from './http.js';
import { expectAllStored, ingest, INSTANCES_PER_REQUEST, sendStow, stowBatches, type IngestResult } from './ingest.js';
import { checkInterrupted, interrupted } from './interrupt.js';
import { cpuSeconds, percentile, syncDisks, watchMachineCpu, type MachineCpu } from './measure.js';
import { randomAdminKey, serverLogTail, startPacsLite } from './pacs-lite.js';
import { BROWSER } from './reads.js';
import { BOMB_SIDE, renderBomb } from './render-bomb.js';
import type { RunningServer } from './server-process.js';
import type { Settings } from './settings.js';
import { watchServer, type ServerWatch } from './watch.js';

/**
 * The load case of issue 10: 45 readers pulling series metadata and frames of a stored CT and cine corpus while 5
 * uploads stream, for BENCH_LOAD_SECONDS; then the same with a render bomb stored, 5 of the readers asking for its
 * thumbnail and renderings. The server's memory, open descriptors and /healthz are watched throughout. See bench/README.md.
 */
export const READERS = 45;
export const UPLOADS = 5;
/** Of the readers, those that ask for the render bomb in the second phase: about as many as the issue's "six at once". */
export const BOMB_READERS = 5;
/** The issue's targets: the server stays under this RSS, and /healthz answers within this, throughout. */
export const RSS_TARGET_MB = 500;
export const HEALTHZ_TARGET_MS = 100;
/** After the phase, answers still under way get this long to finish; then they are cut and counted as errors. */
const DRAIN_SECONDS = 30;
/** Watched before the load starts: the server at rest, the reference of the same run. */
const IDLE_SECONDS = 3;
/** Single-frame CT series read (the longest of the corpus). */
const CT_SERIES = 4;
const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
const JPEG = 'image/jpeg';

export const LOAD_KINDS = ['seriesMetadata', 'ctFrame', 'cineFrame', 'bombThumbnail', 'bombRendered', 'stow'] as const;
export type LoadKind = (typeof LOAD_KINDS)[number];
/** A reader's requests in turn, each reader starting at another place: a viewer asks for frames more often than metadata. */
const READER_TURNS: LoadKind[] = ['seriesMetadata', 'ctFrame', 'ctFrame', 'ctFrame', 'cineFrame', 'cineFrame'];

/** One kind of request over a phase. Latencies are of correct answers only. */
export type KindResult = {
  /** Correct answers, refusals that give a reason (413, 422, 429, 503, 507 with `{error, detail}`), and everything else. */
  ok: number;
  refused: number;
  errors: number;
  p50Ms: number;
  p95Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Correct answers per second of the phase, and the bytes they carried (for STOW: the bytes sent). */
  perSecond: number;
  bytes: number;
  /** STOW: instances stored, and how many of them the pool had already sent (duplicates: answered, not written again). */
  instances?: number;
  repeated?: number;
  statuses: Record<string, number>;
  /** Errors by what they were: an HTTP status, or the socket's error code (ECONNRESET: the server closed the connection). */
  errorsBy: Record<string, number>;
  firstError?: string;
  firstRefusal?: string;
  samplesMs: number[];
};

export type LoadPhase = {
  /** Seconds during which new requests were started, then until the last answer or cut. */
  seconds: number;
  drainSeconds: number;
  kinds: Partial<Record<LoadKind, KindResult>>;
  watch: ServerWatch;
  serverCpuSeconds: number;
  clientCpuSeconds: number;
  machine: MachineCpu;
};

export type LoadResults = {
  server: string;
  readSet: string;
  /** The read set, stored by STOW before the load (not timed as part of it). */
  prestored: Pick<IngestResult, 'instances' | 'bytes' | 'seconds' | 'peakRssMB'>;
  uploadPool: { instances: number; bytes: number };
  idle?: ServerWatch;
  plain?: LoadPhase | { error: string };
  bomb?: { jpegBytes: number; dicomBytes: number; storeMs: number } | { error: string };
  withBomb?: LoadPhase | { error: string };
  error?: string;
};

type Outcome = { ms: number; bytes: number; instances?: number; repeated?: number };
/** An answer the server gave with a reason, as asked of it under load: not an error, not a success. */
class Refused extends Error {}

type Targets = {
  series: Array<{ studyUid: string; seriesUid: string; instances: CorpusInstance[]; frameBytes: number }>;
  cine: { instances: CorpusInstance[]; frameBytes: number };
  uploads: CorpusInstance[][];
  bomb?: { studyUid: string; seriesUid: string; sopUid: string };
};

/**
 * Starts PACS-lite on a fresh data folder, stores the read set, watches it at rest, runs the two phases and stops it.
 * A phase that cannot run is recorded as failed; the server is stopped whatever happens (also on Ctrl-C, via `running`).
 */
export async function loadCase(opts: {
  settings: Settings;
  workDir: string;
  corpus: Corpus;
  log: (line: string) => void;
  running: Set<RunningServer>;
}): Promise<LoadResults> {
  const { settings, corpus, log } = opts;
  const { readSet, cine } = chooseReadSet(corpus);
  const readSetFiles = new Set(readSet.map((i) => i.file));
  const pool = { ...corpus, instances: corpus.instances.filter((i) => !readSetFiles.has(i.file)) };
  const results: LoadResults = {
    server: '',
    readSet: '',
    prestored: { instances: 0, bytes: 0, seconds: 0, peakRssMB: 0 },
    uploadPool: { instances: pool.instances.length, bytes: pool.instances.reduce((n, i) => n + i.size, 0) },
  };
  const serverDir = path.join(opts.workDir, 'load');
  await fs.mkdir(serverDir);
  const server = await startPacsLite(settings, serverDir, { adminKey: randomAdminKey() });
  opts.running.add(server);
  try {
    results.server = server.version;
    const seriesList = groupSeries(readSet.filter((i) => i.frames === 1));
    const bytes = readSet.reduce((n, i) => n + i.size, 0);
    log(`load: storing the read set (${readSet.length} instances, ${(bytes / 1e6).toFixed(0)} MB) before the load`);
    const stored = await ingest(server, { ...corpus, instances: readSet, bytes }, log);
    results.prestored = { instances: stored.instances, bytes: stored.bytes, seconds: stored.seconds, peakRssMB: stored.peakRssMB };
    const targets: Targets = {
      series: await Promise.all(seriesList.map(async (s) => ({ ...s, frameBytes: (await expectedFrame(corpus, s.instances[0]!, 1))?.length ?? 0 }))),
      cine: { instances: cine, frameBytes: cine[0] ? ((await expectedFrame(corpus, cine[0], 1))?.length ?? 0) : 0 },
      uploads: stowBatches(pool),
    };
    results.readSet = describeReadSet(targets, pool);
    checkInterrupted();

    log(`load: the server at rest, ${IDLE_SECONDS} s`);
    const idle = await watchServer(server.pid, healthzOf(server));
    await new Promise((r) => setTimeout(r, IDLE_SECONDS * 1000));
    results.idle = await idle.stop();

    const uploads = { next: 0 };
    results.plain = await phase('load', server, corpus, targets, uploads, settings.loadSeconds, log);
    checkInterrupted();

    try {
      const bomb = await renderBomb(settings.cacheDir);
      const { pieces, contentType } = stowBody([bomb.bytes]);
      const reply = await request(`${server.dicomweb}/studies`, {
        method: 'POST',
        headers: { ...server.auth, 'Content-Type': contentType, Accept: 'application/dicom+json' },
        body: pieces,
      });
      if (reply.status !== 200) throw new Error(`STOW of the render bomb: HTTP ${reply.status} ${decodedBody(reply).toString('utf8', 0, 300)}`);
      results.bomb = { jpegBytes: bomb.jpegBytes, dicomBytes: bomb.bytes.length, storeMs: reply.ms };
      targets.bomb = bomb;
      log(`load: render bomb stored (${BOMB_SIDE}×${BOMB_SIDE} baseline JPEG, ${(bomb.jpegBytes / 1e6).toFixed(1)} MB)`);
    } catch (e) {
      checkInterrupted();
      results.bomb = { error: (e as Error).message };
      log(`load: render bomb not stored: ${results.bomb.error}`);
    }
    if (targets.bomb) results.withBomb = await phase('load + render bomb', server, corpus, targets, uploads, settings.loadSeconds, log);
  } catch (e) {
    checkInterrupted();
    // The server's own words on what failed; its log goes with its data folder.
    const tail = await serverLogTail(serverDir);
    results.error = `${(e as Error).message}${tail ? `\n    end of the server's log:\n    ${tail}` : ''}`;
    log(`load failed: ${results.error}`);
  } finally {
    dropConnections();
    await server.stop();
    opts.running.delete(server);
    await fs.rm(serverDir, { recursive: true, force: true });
  }
  return results;
}

/** One phase: readers and uploads for `seconds`, then the answers still under way, with the server watched throughout. */
async function phase(
  name: string,
  server: RunningServer,
  corpus: Corpus,
  targets: Targets,
  uploads: { next: number },
  seconds: number,
  log: (line: string) => void,
): Promise<LoadPhase | { error: string }> {
  log(`load: ${name}: ${READERS} readers${targets.bomb ? ` (${BOMB_READERS} of them asking for the render bomb)` : ''} and ${UPLOADS} uploads for ${seconds} s`);
  try {
    // Earlier writes are flushed first, so that their writeback is not timed here.
    syncDisks();
    const tally = new Map<LoadKind, Tally>();
    const record = (kind: LoadKind, outcome: Outcome | Refused | Error) => {
      const t = tally.get(kind) ?? newTally();
      tally.set(kind, t);
      if (outcome instanceof Refused) {
        t.refused++;
        t.firstRefusal ??= outcome.message;
      } else if (outcome instanceof Error) {
        t.errors++;
        t.firstError ??= outcome.message;
        const code = (outcome as NodeJS.ErrnoException).code;
        const what = code
          ? `${code}${outcome.message.endsWith('kept-alive connection') ? ' (kept-alive)' : ''}`
          : (/^.*?: (HTTP \d+)/.exec(outcome.message)?.[1] ?? 'wrong answer');
        t.errorsBy[what] = (t.errorsBy[what] ?? 0) + 1;
      } else {
        t.samplesMs.push(outcome.ms);
        t.bytes += outcome.bytes;
        t.instances += outcome.instances ?? 0;
        t.repeated += outcome.repeated ?? 0;
      }
    };
    const watch = await watchServer(server.pid, healthzOf(server));
    const cpuBefore = await cpuSeconds(server.pid);
    const clientBefore = process.cpuUsage();
    const machine = await watchMachineCpu();
    const started = performance.now();
    const deadline = started + seconds * 1000;
    const cutAt = deadline + DRAIN_SECONDS * 1000;
    const timeoutMs = () => Math.max(1000, cutAt - performance.now());
    const statuses = new Map<LoadKind, Record<string, number>>();
    const timed = async (kind: LoadKind, call: () => Promise<Outcome>) => {
      const sent = performance.now();
      try {
        record(kind, await call());
      } catch (e) {
        if (interrupted()) return;
        record(kind, e as Error);
        // A server that refuses at once is not asked again at once: no spinning on a dead port.
        await new Promise((r) => setTimeout(r, Math.max(0, 50 - (performance.now() - sent))));
      }
    };
    const count = (kind: LoadKind, reply: Reply) => {
      const s = statuses.get(kind) ?? {};
      s[reply.status] = (s[reply.status] ?? 0) + 1;
      statuses.set(kind, s);
      return reply;
    };
    const reader = async (r: number) => {
      const bombReader = targets.bomb && r < BOMB_READERS;
      for (let n = 0; performance.now() < deadline && !interrupted(); n++) {
        // Bomb readers alternate, half of them starting with a rendering, so both kinds are asked from the start.
        const kind: LoadKind = bombReader ? ((r + n) % 2 ? 'bombRendered' : 'bombThumbnail') : READER_TURNS[(r + n) % READER_TURNS.length]!;
        await timed(kind, () => readOnce(kind, server, targets, r, n, timeoutMs(), (reply) => count(kind, reply)));
      }
    };
    const uploader = async () => {
      while (performance.now() < deadline && !interrupted() && targets.uploads.length) {
        const i = uploads.next++;
        const batch = targets.uploads[i % targets.uploads.length]!;
        await timed('stow', async () => {
          const reply = count('stow', await sendStow(server, corpus, batch, timeoutMs()));
          refuseWithReason(reply, 'STOW');
          expectAllStored(server, batch, reply);
          const repeated = i >= targets.uploads.length ? batch.length : 0;
          return { ms: reply.ms, bytes: batch.reduce((n, b) => n + b.size, 0), instances: batch.length, repeated };
        });
      }
    };
    await Promise.all([...Array.from({ length: READERS }, (_, r) => reader(r)), ...Array.from({ length: UPLOADS }, uploader)]);
    const ended = performance.now();
    const serverCpu = (await cpuSeconds(server.pid)) - cpuBefore;
    const client = process.cpuUsage(clientBefore);
    const machineCpu = await machine.stop();
    const watched = await watch.stop();
    checkInterrupted();
    const kinds: LoadPhase['kinds'] = {};
    for (const [kind, t] of tally) kinds[kind] = summarize(t, statuses.get(kind) ?? {}, seconds, kind === 'stow');
    const result: LoadPhase = {
      seconds,
      drainSeconds: Math.max(0, (ended - deadline) / 1000),
      kinds,
      watch: watched,
      serverCpuSeconds: serverCpu,
      clientCpuSeconds: (client.user + client.system) / 1e6,
      machine: machineCpu,
    };
    log(
      `load: ${name}: peak RSS ${watched.peakRssMB.toFixed(0)} MB, ${watched.peakFds} descriptors at most, /healthz p99 ${watched.healthz.p99Ms.toFixed(1)} ms, max ${watched.healthz.maxMs.toFixed(1)} ms`,
    );
    return result;
  } catch (e) {
    checkInterrupted();
    log(`load: ${name} failed: ${(e as Error).message}`);
    return { error: (e as Error).message };
  }
}

type Tally = {
  samplesMs: number[];
  bytes: number;
  instances: number;
  repeated: number;
  refused: number;
  errors: number;
  errorsBy: Record<string, number>;
  firstError?: string;
  firstRefusal?: string;
};

function newTally(): Tally {
  return { samplesMs: [], bytes: 0, instances: 0, repeated: 0, refused: 0, errors: 0, errorsBy: {} };
}

function summarize(t: Tally, statuses: Record<string, number>, seconds: number, stow: boolean): KindResult {
  return {
    ok: t.samplesMs.length,
    refused: t.refused,
    errors: t.errors,
    p50Ms: percentile(t.samplesMs, 0.5),
    p95Ms: percentile(t.samplesMs, 0.95),
    p99Ms: percentile(t.samplesMs, 0.99),
    maxMs: Math.max(0, ...t.samplesMs),
    perSecond: t.samplesMs.length / seconds,
    bytes: t.bytes,
    ...(stow ? { instances: t.instances, repeated: t.repeated } : {}),
    statuses,
    errorsBy: t.errorsBy,
    ...(t.firstError ? { firstError: t.firstError } : {}),
    ...(t.firstRefusal ? { firstRefusal: t.firstRefusal } : {}),
    samplesMs: t.samplesMs.map((ms) => Math.round(ms * 100) / 100),
  };
}

/** The n-th request of reader r of its kind; throws on a wrong answer, and Refused on a refusal with a reason. */
async function readOnce(kind: LoadKind, server: RunningServer, targets: Targets, r: number, n: number, timeoutMs: number, seen: (reply: Reply) => Reply): Promise<Outcome> {
  const headers = { ...server.auth, ...BROWSER };
  const spread = r * 7919 + n * 37;
  const series = targets.series[spread % targets.series.length]!;
  const seriesUrl = (s: { studyUid: string; seriesUid: string }) => `${server.dicomweb}/studies/${s.studyUid}/series/${s.seriesUid}`;
  if (kind === 'seriesMetadata') {
    const reply = seen(await request(`${seriesUrl(series)}/metadata`, { headers: { ...headers, Accept: 'application/dicom+json' }, timeoutMs }));
    refuseWithReason(reply, 'series metadata');
    const listed = (JSON.parse(decodedBody(reply).toString('utf8')) as unknown[]).length;
    if (listed !== series.instances.length) throw new Error(`series metadata lists ${listed} instances, not ${series.instances.length}`);
    return { ms: reply.ms, bytes: reply.body.length };
  }
  if (kind === 'ctFrame' || kind === 'cineFrame') {
    const cine = kind === 'cineFrame';
    const instances = cine ? targets.cine.instances : series.instances;
    if (!instances.length) throw new Error('the corpus has no multi-frame instance to play');
    const instance = instances[spread % instances.length]!;
    // A cine loop plays its frames in turn.
    const frame = cine ? ((r + n) % instance.frames) + 1 : 1;
    const url = `${seriesUrl(instance)}/instances/${instance.sopUid}/frames/${frame}`;
    const reply = seen(await request(url, { headers: { ...headers, Accept: FRAME_ACCEPT }, timeoutMs }));
    refuseWithReason(reply, `frame ${frame} of ${instance.file}`);
    const parts = multipartParts({ ...reply, body: decodedBody(reply) });
    const expected = cine ? targets.cine.frameBytes : series.frameBytes;
    if (parts.length !== 1 || parts[0]!.length !== expected) throw new Error(`frame ${frame} of ${instance.file}: ${parts.length} part(s) of ${parts[0]?.length} bytes, not one of ${expected}`);
    return { ms: reply.ms, bytes: parts[0]!.length };
  }
  // The render bomb: its thumbnail (cached once made), and renderings at a size never asked before, which no cache holds.
  const bomb = targets.bomb!;
  const box = kind === 'bombThumbnail' ? 128 : 256 + r * 1000 + n;
  const url = `${seriesUrl(bomb)}/instances/${bomb.sopUid}/${kind === 'bombThumbnail' ? 'thumbnail' : `rendered?viewport=${box},${box}`}`;
  const reply = seen(await request(url, { headers: { ...headers, Accept: JPEG }, timeoutMs }));
  refuseWithReason(reply, kind === 'bombThumbnail' ? 'thumbnail of the render bomb' : 'rendering of the render bomb');
  if (!String(reply.headers['content-type']).startsWith(JPEG)) throw new Error(`render bomb: Content-Type ${reply.headers['content-type']}, not ${JPEG}`);
  const { width = 0, height = 0 } = await sharp(reply.body).metadata();
  if (Math.max(width, height) !== box) throw new Error(`render bomb: a ${width}×${height} image for a ${box}×${box} box`);
  return { ms: reply.ms, bytes: reply.body.length };
}

/** Returns when the answer is a 200; throws Refused for a refusal with a reason, an Error for anything else. */
function refuseWithReason(reply: Reply, what: string): void {
  if (reply.status === 200) return;
  const text = decodedBody(reply).toString('utf8', 0, 300);
  let reasoned = false;
  try {
    const body = JSON.parse(text) as { error?: unknown; detail?: unknown };
    reasoned = typeof body.error === 'string' && typeof body.detail === 'string';
  } catch {
    // Not JSON: no reason given.
  }
  if (reasoned && [413, 422, 429, 503, 507].includes(reply.status)) throw new Refused(`${what}: HTTP ${reply.status} ${text}`);
  throw new Error(`${what}: HTTP ${reply.status} ${text}`);
}

/** The longest single-frame CT series of the corpus, and its multi-frame (cine) instances: what the readers read. */
function chooseReadSet(corpus: Corpus): { readSet: CorpusInstance[]; cine: CorpusInstance[] } {
  const ct = groupSeries(corpus.instances.filter((i) => i.modality === 'CT' && i.frames === 1))
    .sort((a, b) => b.instances.length - a.instances.length)
    .slice(0, CT_SERIES);
  if (!ct.length) throw new Error('the corpus has no single-frame CT series to read');
  const most = Math.max(0, ...corpus.instances.map((i) => i.frames));
  const cine = most > 1 ? corpus.instances.filter((i) => i.frames === most) : [];
  return { readSet: [...ct.flatMap((s) => s.instances), ...cine], cine };
}

function groupSeries(instances: CorpusInstance[]): Array<{ studyUid: string; seriesUid: string; instances: CorpusInstance[] }> {
  const bySeries = new Map<string, CorpusInstance[]>();
  for (const i of instances) bySeries.set(i.seriesUid, [...(bySeries.get(i.seriesUid) ?? []), i]);
  return [...bySeries.values()].map((list) => ({ studyUid: list[0]!.studyUid, seriesUid: list[0]!.seriesUid, instances: list }));
}

function describeReadSet(t: Targets, pool: Corpus): string {
  const ct = t.series.map((s) => s.instances.length).join(', ');
  const cine = t.cine.instances.length ? `, ${t.cine.instances.length} cine instance(s) of ${t.cine.instances[0]!.frames} frames of ${t.cine.frameBytes} bytes` : '';
  const poolBytes = pool.instances.reduce((n, i) => n + i.size, 0);
  return (
    `read: ${t.series.length} CT series of ${ct} slices (frames of ${t.series[0]!.frameBytes} bytes)${cine}; ` +
    `uploaded: the rest of the corpus, ${pool.instances.length} instances (${(poolBytes / 1e6).toFixed(0)} MB), ${INSTANCES_PER_REQUEST} to a STOW request, from the start again (as duplicates) if the phases outrun it`
  );
}

function healthzOf(server: RunningServer): string {
  return `${new URL(server.dicomweb).origin}/healthz`;
}
