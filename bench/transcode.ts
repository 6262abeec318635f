/**
 * Transcoding: a 512×512 CT slice stored as JPEG-LS lossless, retrieved as Explicit VR Little Endian. The first
 * retrieve of each copy (a conversion) against dcmtk's dcmdjpls on the same file; the second (the cached conversion)
 * against the same slice stored uncompressed. `npm run bench -- transcode` runs it alone. See bench/README.md.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { parsePart10 } from '../src/dicom/parse.js';
import { TransferSyntax } from '../src/dicom/transfer-syntax.js';
import { newUid } from '../src/dicom/write.js';
import { syntheticInstance } from '../test/fixtures/synthetic.js';
import { scanCorpus, type Corpus, type CorpusInstance } from './corpus.js';
import { runTool, timedRun } from './dcmtk.js';
import { dropConnections, multipartEntries, request } from './http.js';
import { ingest } from './ingest.js';
import { checkInterrupted } from './interrupt.js';
import { interleaved, syncDisks, type Latency } from './measure.js';
import { randomAdminKey, serverLogTail, startPacsLite, type PacsLiteServer } from './pacs-lite.js';
import { fixed, renderColumns } from './report.js';
import type { RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

const EXPLICIT_LE = TransferSyntax.ExplicitVRLittleEndian;
const JPEG_LS_LOSSLESS = '1.2.840.10008.1.2.4.80';
const SIDE = 512;
/** The issue's targets: uncached within 2× of dcmdjpls, cached as fast as an instance stored uncompressed. */
const WITHIN_OF_DCMDJPLS = 2;
const AS_EXPLICIT_LE = `multipart/related; type="application/dicom"; transfer-syntax=${EXPLICIT_LE}`;
const AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*';

export const TRANSCODE_LINES = ['uncached', 'dcmdjpls', 'processStart', 'cached', 'uncompressed'] as const;
export type TranscodeLine = (typeof TRANSCODE_LINES)[number];

export type TranscodeResults = {
  server: string;
  /** What was converted: the slice, its sizes stored compressed and not. */
  instance: string;
  copies: number;
  lines: Partial<Record<TranscodeLine, Latency>>;
  /** Conversions found in the data folder's derived objects after the run: one per copy when the cache kept them all. */
  cachedConversions?: number;
  error?: string;
};

/** What failed (as opposed to a figure that missed its target). */
export function transcodeFailures(r: TranscodeResults): string[] {
  return r.error ? [r.error] : [];
}

type Copy = { jpegLs: CorpusInstance; uncompressed: CorpusInstance; pixels: Buffer; file: string };

/**
 * Makes `settings.transcodeInstances` + 1 copies of the slice (the first untimed), each with its own UIDs in JPEG-LS
 * and uncompressed, stores them in a PACS-lite of its own, then times the two phases; the server is stopped whatever
 * happens (also on Ctrl-C, via `running`).
 */
export async function transcodeCase(opts: { settings: Settings; workDir: string; log: (line: string) => void; running: Set<RunningServer> }): Promise<TranscodeResults> {
  const { settings, log } = opts;
  const dir = path.join(opts.workDir, 'transcode');
  const results: TranscodeResults = { server: '', instance: '', copies: settings.transcodeInstances, lines: {} };
  let server: PacsLiteServer | undefined;
  try {
    const { copies, corpus } = await makeCopies(dir, settings.transcodeInstances + 1, log);
    const [jpegLsBytes, nativeBytes] = [copies[0]!.jpegLs.size, copies[0]!.uncompressed.size];
    results.instance = `${SIDE}×${SIDE} CT slice, 16 bits allocated, 12 stored; JPEG-LS lossless (dcmcjpls) ${(jpegLsBytes / 1e3).toFixed(0)} kB, uncompressed ${(nativeBytes / 1e3).toFixed(0)} kB (${(nativeBytes / jpegLsBytes).toFixed(2)}:1)`;
    server = await startPacsLite(settings, path.join(dir, 'server'), { adminKey: randomAdminKey() });
    opts.running.add(server);
    results.server = server.version;
    log(`transcode: storing ${copies.length} copies in JPEG-LS and ${copies.length} uncompressed`);
    await ingest(server, corpus, log);
    syncDisks();
    const pacs = server;

    log(`transcode: uncached, each JPEG-LS copy retrieved as Explicit VR Little Endian, in turn with dcmdjpls on its file`);
    const output = path.join(dir, 'dcmdjpls-out.dcm');
    Object.assign(
      results.lines,
      await interleaved(copies.length, {
        uncached: (i) => retrieve(pacs, copies[i]!.jpegLs, AS_EXPLICIT_LE, copies[i]!.pixels),
        dcmdjpls: async (i) => {
          const { ms } = timedRun('dcmdjpls', [copies[i]!.file, output]);
          expectPixels(await fs.readFile(output), copies[i]!.jpegLs.sopUid, copies[i]!.pixels, `dcmdjpls ${copies[i]!.jpegLs.file}`);
          return ms;
        },
        processStart: async () => timedRun('dcmdjpls', ['--version']).ms,
      }),
    );
    checkInterrupted();
    log('transcode: cached, the same copies again, in turn with the uncompressed ones as stored');
    Object.assign(
      results.lines,
      await interleaved(copies.length, {
        cached: (i) => retrieve(pacs, copies[i]!.jpegLs, AS_EXPLICIT_LE, copies[i]!.pixels),
        uncompressed: (i) => retrieve(pacs, copies[i]!.uncompressed, AS_STORED, copies[i]!.pixels),
      }),
    );
    const stored = await fs.readdir(pacs.dataDir, { recursive: true });
    results.cachedConversions = stored.filter((f) => f.endsWith('-explicit-le.dcm')).length;
  } catch (e) {
    checkInterrupted();
    const tail = server ? await serverLogTail(path.join(dir, 'server')) : '';
    results.error = `${(e as Error).message}${tail ? `\n    end of the server's log:\n    ${tail}` : ''}`;
    log(`transcode failed: ${results.error}`);
  } finally {
    dropConnections();
    if (server) {
      await server.stop();
      opts.running.delete(server);
    }
    await fs.rm(dir, { recursive: true, force: true });
  }
  return results;
}

/** One WADO-RS instance retrieve; throws unless it is one Explicit VR Little Endian part holding the slice's pixels. */
async function retrieve(server: RunningServer, instance: CorpusInstance, accept: string, pixels: Buffer): Promise<number> {
  const url = `${server.dicomweb}/studies/${instance.studyUid}/series/${instance.seriesUid}/instances/${instance.sopUid}`;
  const what = `${instance.file} with Accept: ${accept}`;
  const reply = await request(url, { headers: { ...server.auth, Accept: accept } });
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${reply.body.toString('utf8', 0, 300)}`);
  const parts = multipartEntries(reply);
  if (parts.length !== 1) throw new Error(`${what}: ${parts.length} parts, not one`);
  const type = parts[0]!.headers['content-type'] ?? '';
  if (!new RegExp(`^application/dicom;\\s*transfer-syntax="?${EXPLICIT_LE.replaceAll('.', '\\.')}"?$`).test(type)) throw new Error(`${what}: a part of type "${type}"`);
  expectPixels(parts[0]!.body, instance.sopUid, pixels, what);
  return reply.ms;
}

/** Throws unless `file` is the instance in Explicit VR Little Endian with exactly the pixels it was made with. */
function expectPixels(file: Buffer, sopUid: string, pixels: Buffer, what: string): void {
  const parsed = parsePart10(file);
  if (parsed.transferSyntaxUID !== EXPLICIT_LE || parsed.sopInstanceUID !== sopUid) throw new Error(`${what}: instance ${parsed.sopInstanceUID} in ${parsed.transferSyntaxUID}, not ${sopUid} in ${EXPLICIT_LE}`);
  const element = parsed.pixelData;
  const answered = element && file.subarray(element.dataOffset, element.dataOffset + element.length);
  if (!answered?.equals(pixels)) throw new Error(`${what}: ${answered?.length ?? 0} bytes of pixel data, not the ${pixels.length} bytes of the slice`);
}

/**
 * `count` copies of the slice, each in JPEG-LS (dcmcjpls, lossless) and uncompressed with UIDs of its own, and noise of
 * its own so that no two copies hold the same pixels.
 */
async function makeCopies(dir: string, count: number, log: (line: string) => void): Promise<{ copies: Copy[]; corpus: Corpus }> {
  log(`transcode: making ${count} copies of a ${SIDE}×${SIDE} CT slice, JPEG-LS with dcmcjpls and uncompressed`);
  const source = path.join(dir, 'source');
  const corpusDir = path.join(dir, 'corpus');
  for (const folder of [source, path.join(corpusDir, 'jpeg-ls'), path.join(corpusDir, 'uncompressed')]) await fs.mkdir(folder, { recursive: true });
  const studyUID = newUid();
  const series = { 'jpeg-ls': newUid(), uncompressed: newUid() };
  const allPixels: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    checkInterrupted();
    const pixels = ctSlice(SIDE, i + 1);
    allPixels.push(pixels);
    const name = `${String(i).padStart(4, '0')}.dcm`;
    const instance = (set: keyof typeof series) =>
      syntheticInstance({ studyUID, seriesUID: series[set], seriesDescription: `bench transcode, ${set}`, modality: 'CT', rows: SIDE, columns: SIDE, instanceNumber: i + 1, extra: [{ tag: '7FE00010', vr: 'OW', value: pixels }] });
    await fs.writeFile(path.join(source, name), instance('jpeg-ls'));
    runTool('dcmcjpls', ['+el', path.join(source, name), path.join(corpusDir, 'jpeg-ls', name)]);
    await fs.writeFile(path.join(corpusDir, 'uncompressed', name), instance('uncompressed'));
  }
  await fs.rm(source, { recursive: true });
  const corpus = await scanCorpus(corpusDir, 'transcode copies');
  const of = (set: string) => corpus.instances.filter((i) => i.file.startsWith(`${set}/`));
  const [jpegLs, uncompressed] = [of('jpeg-ls'), of('uncompressed')];
  const wrong = jpegLs.filter((i) => i.transferSyntaxUid !== JPEG_LS_LOSSLESS);
  if (jpegLs.length !== count || uncompressed.length !== count || wrong.length) throw new Error(`dcmcjpls made ${jpegLs.length - wrong.length} JPEG-LS lossless files of ${count}`);
  const copies = jpegLs.map((j, i) => ({ jpegLs: j, uncompressed: uncompressed[i]!, pixels: allPixels[i]!, file: path.join(corpusDir, j.file) }));
  return { copies, corpus };
}

/**
 * A CT-like axial slice in stored values (HU + 1024, 12 bits): air, a body with a ring of fat, soft tissue, lungs,
 * heart, aorta, spine and ribs, the table, and quantum noise, so that JPEG-LS has a real slice's work (about 2–3:1)
 * rather than a flat phantom's. `seed` varies the noise.
 */
function ctSlice(side: number, seed: number): Buffer {
  let state = seed >>> 0;
  // mulberry32: the same slices on every run.
  const random = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
  const c = side / 2;
  const inside = (x: number, y: number, cx: number, cy: number, rx: number, ry: number) => ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 < 1;
  const ribs = Array.from({ length: 12 }, (_, k) => {
    const angle = Math.PI * (0.15 + (0.7 * (k % 6)) / 5) * (k < 6 ? -1 : 1) - Math.PI / 2;
    return [c + Math.cos(angle) * 0.37 * side, c + Math.sin(angle) * 0.26 * side] as const;
  });
  const pixels = Buffer.alloc(side * side * 2);
  for (let y = 0; y < side; y++) {
    for (let x = 0; x < side; x++) {
      let hu = -1000;
      let sigma = 4;
      const body = ((x - c) / (0.42 * side)) ** 2 + ((y - c) / (0.3 * side)) ** 2;
      if (body < 1) {
        sigma = 14;
        hu = body > 0.82 ? -100 : 45 + 15 * Math.sin(x / 23) * Math.cos(y / 31);
        if (inside(x, y, c - 0.17 * side, c - 0.03 * side, 0.12 * side, 0.17 * side) || inside(x, y, c + 0.17 * side, c - 0.03 * side, 0.12 * side, 0.17 * side)) {
          hu = -850 + 60 * Math.sin(x / 5 + y / 9) * Math.sin(y / 7);
        }
        if (inside(x, y, c + 0.04 * side, c - 0.02 * side, 0.09 * side, 0.08 * side)) hu = 40;
        if (inside(x, y, c - 0.02 * side, c + 0.1 * side, 0.025 * side, 0.025 * side)) hu = 180;
        if (inside(x, y, c, c + 0.2 * side, 0.045 * side, 0.05 * side)) hu = 700 - 250 * (((x - c) / (0.045 * side)) ** 2 < 0.5 ? 1 : 0);
        if (ribs.some(([rx, ry]) => inside(x, y, rx, ry, 0.014 * side, 0.014 * side))) hu = 650;
      } else if (y > 0.83 * side && y < 0.85 * side && Math.abs(x - c) < 0.45 * side) {
        hu = 200;
        sigma = 6;
      }
      pixels.writeUInt16LE(Math.min(4095, Math.max(0, Math.round(hu + 1024 + sigma * gauss()))), (y * side + x) * 2);
    }
  }
  return pixels;
}

/** The transcoding table: PACS-lite against its reference on each line, the ratio (reference ÷ PACS-lite) and the verdict. */
export function renderTranscode(r: TranscodeResults): string {
  const l = r.lines;
  const start = l.processStart?.medianMs;
  const header = ['metric', 'PACS-lite', 'reference', 'ratio', 'target', 'result'];
  const rows: string[][] = [];
  const n = l.uncached?.n ?? r.copies;
  const within = 1 / WITHIN_OF_DCMDJPLS;
  const row = (metric: string, ours: number | undefined, reference: number | undefined, atLeast?: number, target = '') => {
    const ratio = ours !== undefined && reference !== undefined ? reference / ours : undefined;
    const verdict = atLeast === undefined || ratio === undefined ? '' : ratio >= atLeast ? 'PASS' : 'MISS';
    rows.push([metric, fixed(ours, 2), fixed(reference, 2), ratio === undefined ? '' : `${ratio.toFixed(2)}×`, target, verdict]);
  };
  const dcmdjpls = `within ${WITHIN_OF_DCMDJPLS}× of dcmdjpls (≥ ${within.toFixed(2)}×)`;
  for (const [stat, of] of [['median', (x: Latency) => x.medianMs], ['p95', (x: Latency) => x.p95Ms]] as const) {
    const ours = l.uncached && of(l.uncached);
    const tool = l.dcmdjpls && of(l.dcmdjpls);
    row(`uncached (${n} instances) vs dcmdjpls, a process a file, ${stat} ms`, ours, tool, within, dcmdjpls);
    row(`uncached vs dcmdjpls less its process start, ${stat} ms`, ours, tool !== undefined && start !== undefined ? tool - start : undefined, within, dcmdjpls);
  }
  rows.push(['dcmdjpls --version (process start), median / p95 ms', '', l.processStart ? `${fixed(l.processStart.medianMs, 2)} / ${fixed(l.processStart.p95Ms, 2)}` : '', '', '', '']);
  for (const [stat, of] of [['median', (x: Latency) => x.medianMs], ['p95', (x: Latency) => x.p95Ms]] as const) {
    row(`cached vs stored uncompressed (transfer-syntax=*), ${stat} ms`, l.cached && of(l.cached), l.uncompressed && of(l.uncompressed), 1, 'as fast (≥ 1.00×)');
  }
  const firsts = TRANSCODE_LINES.filter((k) => l[k]).map((k) => `${k} ${fixed(l[k]!.firstMs, 1)} ms`);
  return [
    `transcoding to Explicit VR Little Endian, PACS-lite${r.server ? ` (${r.server})` : ''}:`,
    ...(r.instance ? [`  ${r.instance}; ${r.copies + 1} copies, each with its own UIDs and noise; the first call of each line untimed`] : []),
    `  uncached: each JPEG-LS copy retrieved once (transfer-syntax=${EXPLICIT_LE}), in turn with \`dcmdjpls in out\` on its file (a process a file:`,
    '    the tool takes one input) and `dcmdjpls --version` (its process start alone, without loading the data dictionary)',
    '  cached: each copy retrieved again, in turn with its uncompressed twin as stored (transfer-syntax=*)',
    `  checked: every answer is one part application/dicom; transfer-syntax=${EXPLICIT_LE} with the copy's UID and the slice's ${fixed(SIDE * SIDE * 2, 0)} pixel bytes; dcmdjpls's output likewise`,
    renderColumns(header, rows, header.map((_, i) => i >= 1 && i <= 3)),
    ...(firsts.length ? [`  first (untimed) calls: ${firsts.join(', ')}`] : []),
    ...(r.cachedConversions !== undefined ? [`  conversions kept as derived objects in the data folder afterwards: ${r.cachedConversions} of ${r.copies + 1}`] : []),
    ...(r.error ? [`  failed: ${r.error}`] : []),
  ].join('\n');
}
