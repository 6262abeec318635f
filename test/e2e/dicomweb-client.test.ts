import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, readMultipartResponse, startServer, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';
import { launchChromium } from './viewer-page.js';

/**
 * dicomweb-client, the DICOMweb client OHIF uses, run where OHIF runs it: in Chromium, on a page of the server's
 * own origin (as the OHIF PACS-lite serves), so every request goes through the browser's own XMLHttpRequest.
 * Every answer is checked against the files as dcmtk and gdcm read them: attributes by dcm2json, stored frames
 * by dcmdump +W, decoded frames by dcmdjpeg/dcmdjpls/dcmdrle/gdcmconv.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const CLIENT_UMD = createRequire(import.meta.url).resolve('dicomweb-client');
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

type DicomJson = Record<string, { vr: string; Value?: unknown[]; InlineBinary?: string; BulkDataURI?: string }>;
type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; numberOfFrames: number; rows: number; columns: number; sha256: string };

/** One file in each transfer syntax family, and multi-frame native and RLE. */
const NAMES = ['explicit-le', 'multiframe-40-native', 'jpeg-baseline', 'jpeg-lossless-sv1', 'jpeg-ls-lossless', 'jpeg-ls-near', 'j2k-lossless', 'j2k-lossy', 'rle', 'multiframe-40-rle'];

/** Which Debian tool decodes each stored syntax to Explicit VR Little Endian (dcmtk 3.6.7 has no JPEG 2000). */
function decoder(ts: string): string[] | undefined {
  if (/^1\.2\.840\.10008\.1\.2\.4\.(50|51|57|70)$/.test(ts)) return ['dcmdjpeg'];
  if (/^1\.2\.840\.10008\.1\.2\.4\.8[01]$/.test(ts)) return ['dcmdjpls'];
  if (ts === '1.2.840.10008.1.2.5') return ['dcmdrle'];
  if (/^1\.2\.840\.10008\.1\.2\.4\.9[01]$/.test(ts)) return ['gdcmconv', '--raw'];
  return undefined;
}

/** A file as the tools see it: its attributes but Pixel Data, its frames as stored, and its frames decoded. */
type Truth = { fixture: Fixture; bytes: Buffer; tags: DicomJson; stored: Buffer[]; decoded: Buffer[] };

function truthOf(fixture: Fixture, work: string): Truth {
  const file = path.join(FIXTURES, fixture.path);
  const name = path.basename(file, '.dcm');
  // dcm2json writes no compressed Pixel Data: it reads a copy without it.
  const stripped = path.join(work, `${name}.nopixels.dcm`);
  writeFileSync(stripped, readFileSync(file));
  execFileSync('dcmodify', ['-q', '-nb', '-ea', '(7fe0,0010)', stripped]);
  const tags: DicomJson = JSON.parse(execFileSync('dcm2json', [stripped], { encoding: 'utf8', maxBuffer: 64 << 20 }));
  const stored = pixelItems(file, work, `${name}.stored`);
  const tool = decoder(fixture.transferSyntaxUID);
  let decodedPixels = stored[0]!;
  if (tool) {
    const decodedFile = path.join(work, `${name}.decoded.dcm`);
    execFileSync(tool[0]!, [...tool.slice(1), file, decodedFile]);
    decodedPixels = pixelItems(decodedFile, work, `${name}.decoded`)[0]!;
  }
  const decoded = framesOf(decodedPixels, fixture.numberOfFrames);
  return { fixture, bytes: readFileSync(file), tags, stored: tool ? stored.slice(1) : decoded, decoded };
}

/** Pixel Data as dcmdump +W writes it: one file for native data, one per item for encapsulated data (item 0 is the offset table). */
function pixelItems(file: string, work: string, label: string): Buffer[] {
  const dir = mkdtempSync(path.join(work, `${label}-`));
  execFileSync('dcmdump', ['-q', '+W', dir, file], { maxBuffer: 64 << 20 });
  const items = readdirSync(dir).map((f) => ({ f, n: Number(/\.(\d+)\.raw$/.exec(f)![1]) }));
  return items.sort((a, b) => a.n - b.n).map(({ f }) => readFileSync(path.join(dir, f)));
}

function framesOf(pixels: Buffer, frames: number): Buffer[] {
  const size = pixels.length / frames;
  return Array.from({ length: frames }, (_, i) => pixels.subarray(i * size, (i + 1) * size));
}

/**
 * PS3.18 8.7.3.4: what names no transfer syntax comes in Explicit VR Little Endian, except that pixel data the
 * server holds only lossy compressed may come in its own syntax.
 */
const LOSSY = ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91'];
const defaultSyntaxes = (t: Truth) => (LOSSY.includes(t.fixture.transferSyntaxUID) ? [EXPLICIT_LE, t.fixture.transferSyntaxUID] : [EXPLICIT_LE]);

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A DICOM JSON attribute with numbers as numbers (IS and DS may come as either, PS3.18 F.2.3). */
function canonical(element: DicomJson[string]): unknown {
  const { vr, Value, InlineBinary } = element;
  const value = Value?.map((v) => (vr === 'SQ' ? Object.fromEntries(Object.entries(v as DicomJson).map(([t, e]) => [t, canonical(e)])) : vr === 'IS' || vr === 'DS' ? Number(v) : v));
  return { vr, ...(value?.length ? { Value: value } : {}), ...(InlineBinary ? { InlineBinary } : {}) };
}

/** What the browser sent for one call of the client and what came back: the lines a failure shows. */
type Exchange = { method: string; url: string; accept: string; range?: string; status?: number; contentType?: string; failure?: string };
type Part = { base64: string; contentType: string | null; transferSyntaxUID: string | null };
type Outcome = { value?: any; error?: string; status?: number; exchanges: Exchange[] };

/**
 * Runs in the page: one call of the client, its ArrayBuffers handed back as base64 with what the client read of
 * their Content-Type. Plain JavaScript, so nothing of the test's compilation reaches the browser.
 */
const PAGE_SCRIPT = `
window.callClient = async (url, authorization, method, options) => {
  const client = new DICOMwebClient.api.DICOMwebClient({ url, headers: { Authorization: authorization }, verbose: false });
  const toBase64 = (buffer) => {
    const bytes = new Uint8Array(buffer);
    let text = '';
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(text);
  };
  const out = (v) => v instanceof ArrayBuffer ? { base64: toBase64(v), contentType: v.contentType ?? null, transferSyntaxUID: v.transferSyntaxUID ?? null } : Array.isArray(v) ? v.map(out) : v;
  if (options.datasets) options.datasets = options.datasets.map((b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer);
  try {
    return { value: out(await client[method](options)) };
  } catch (error) {
    return { error: String(error && error.message || error), status: error && error.status };
  }
};`;

let pacs: RunningServer;
let browser: Browser;
let page: Page;
let work: string;
let truths: Truth[];
let stored: Outcome;
const journal: Exchange[] = [];

async function call(method: string, options: Record<string, unknown>): Promise<Outcome> {
  journal.length = 0;
  const outcome = await page.evaluate(([url, authorization, m, o]) => (window as any).callClient(url, authorization, m, o), [pacs.dicomweb, `Bearer ${TEST_ADMIN_KEY}`, method, options] as const);
  return { ...outcome, exchanges: [...journal] };
}

/** The conversation of a call, for failure messages: what the client asked with and what the server answered. */
function told(outcome: Outcome): string {
  const lines = outcome.exchanges.map((e) => `${e.method} ${e.url}\n    Accept: ${e.accept}${e.range ? `\n    Range: ${e.range}` : ''}\n    -> ${e.status ?? 'no answer'} ${e.contentType ?? ''}${e.failure ? `\n    then failed: ${e.failure}` : ''}`);
  return [...lines, ...(outcome.error ? [`client error: ${outcome.error}${outcome.status !== undefined ? ` (XMLHttpRequest status ${outcome.status})` : ''}`] : [])].join('\n');
}

function ok(outcome: Outcome): any {
  expect(outcome.error, told(outcome)).toBeUndefined();
  return outcome.value;
}

const bytesOf = (part: Part) => Buffer.from(part.base64, 'base64');
const ids = (t: Truth) => ({ studyInstanceUID: t.fixture.studyUID, seriesInstanceUID: t.fixture.seriesUID, sopInstanceUID: t.fixture.sopInstanceUID });
const truth = (name: string) => truths.find((t) => t.fixture.path === `${name}.dcm`)!;
/** The first, second and last frames of a multi-frame instance; frame 1 of a single frame. */
const someFrames = (t: Truth) => [...new Set([1, Math.min(2, t.fixture.numberOfFrames), t.fixture.numberOfFrames])];

beforeAll(async () => {
  work = mkdtempSync(path.join(os.tmpdir(), 'pacs-dicomweb-client-'));
  const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
  truths = NAMES.map((name) => truthOf(manifest.find((f) => f.path === `${name}.dcm`)!, work));
  pacs = await startServer();
  browser = await launchChromium();
  page = await browser.newPage();
  page.on('request', (request) => {
    if (!request.url().startsWith(`${pacs.dicomweb}/`)) return;
    const headers = request.headers();
    journal.push({ method: request.method(), url: request.url().slice(pacs.url.length), accept: headers['accept'] ?? '(none)', range: headers['range'] });
  });
  page.on('response', (response) => {
    const entry = journal.findLast((e) => `${pacs.url}${e.url}` === response.url() && e.status === undefined);
    if (entry) Object.assign(entry, { status: response.status(), contentType: response.headers()['content-type'] });
  });
  // A body cut short after its status: XMLHttpRequest then reports status 0 and the client only "request failed".
  page.on('requestfailed', (request) => {
    const entry = journal.findLast((e) => `${pacs.url}${e.url}` === request.url() && !e.failure);
    if (entry) entry.failure = request.failure()?.errorText;
  });
  // A page of the server's origin that the server does not have to serve: the client's calls are then same-origin.
  await page.route(`${pacs.url}/dicomweb-client-test`, (route) => route.fulfill({ contentType: 'text/html', body: '<!doctype html><title>dicomweb-client</title>' }));
  await page.goto(`${pacs.url}/dicomweb-client-test`);
  await page.addScriptTag({ content: readFileSync(CLIENT_UMD, 'utf8') });
  await page.addScriptTag({ content: PAGE_SCRIPT });
  stored = await call('storeInstances', { datasets: truths.map((t) => t.bytes.toString('base64')) });
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await pacs?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('dicomweb-client (OHIF\'s DICOMweb client) in Chromium against PACS-lite', () => {
  it('stores every file with storeInstances, each kept byte for byte', async () => {
    // No Accept is sent with the upload: the browser's */* gets the STOW response as DICOM JSON.
    const response = JSON.parse(ok(stored));
    expect(response['00081198'], told(stored)).toBeUndefined();
    expect(response['00081199'].Value.map((r: DicomJson) => r['00081155']!.Value![0]).sort()).toEqual(truths.map((t) => t.fixture.sopInstanceUID).sort());
    // Read back without the client: its retrieveInstance throws on any mediaTypes (it compares "application/"
    // with "application/dicom"), so it cannot ask for transfer-syntax=*.
    for (const t of truths) {
      const { studyInstanceUID, seriesInstanceUID, sopInstanceUID } = ids(t);
      const response = await adminFetch(`${pacs.dicomweb}/studies/${studyInstanceUID}/series/${seriesInstanceUID}/instances/${sopInstanceUID}`, {
        headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      });
      const [part] = await readMultipartResponse(response);
      expect(sha256(part!.body), t.fixture.path).toBe(t.fixture.sha256);
    }
  });

  it('finds each study, series and instance with searchForStudies/Series/Instances, with the values of its file', async () => {
    const levels = [
      { method: 'searchForStudies', scope: () => ({}), key: '0020000D', uid: (t: Truth) => t.fixture.studyUID, required: ['00080020', '00080050', '00100010', '00100020', '0020000D'] },
      { method: 'searchForSeries', scope: (t: Truth) => ({ studyInstanceUID: t.fixture.studyUID }), key: '0020000E', uid: (t: Truth) => t.fixture.seriesUID, required: ['00080060', '0020000E', '00200011'] },
      { method: 'searchForInstances', scope: (t: Truth) => ({ studyInstanceUID: t.fixture.studyUID, seriesInstanceUID: t.fixture.seriesUID }), key: '00080018', uid: (t: Truth) => t.fixture.sopInstanceUID, required: ['00080016', '00080018', '00200013', '00280010', '00280011'] },
    ];
    for (const t of truths) {
      for (const level of levels) {
        const answer = await call(level.method, { ...level.scope(t), queryParams: { [level.key]: level.uid(t), includefield: 'all' } });
        const found: DicomJson[] = ok(answer);
        expect(found, `${level.method} ${t.fixture.path}\n${told(answer)}`).toHaveLength(1);
        const [hit] = found as [DicomJson];
        for (const tag of level.required) expect(hit[tag], `${level.method} ${t.fixture.path}: ${tag}`).toBeDefined();
        // Every attribute answered that the file has carries the file's value; the rest are computed (counts, URLs).
        for (const [tag, element] of Object.entries(hit)) {
          if (t.tags[tag]) expect(canonical(element), `${level.method} ${t.fixture.path}: ${tag}`).toEqual(canonical(t.tags[tag]!));
        }
      }
    }
    // Instances of the whole store, by SOP Instance UID.
    const t = truth('jpeg-ls-near');
    const all = await call('searchForInstances', { queryParams: { SOPInstanceUID: t.fixture.sopInstanceUID } });
    expect(ok(all).map((i: DicomJson) => i['0020000D']!.Value![0]), told(all)).toEqual([t.fixture.studyUID]);
  });

  it('retrieves study, series and instance metadata holding every attribute of the file, Pixel Data by a BulkDataURI', async () => {
    for (const t of truths) {
      for (const method of ['retrieveStudyMetadata', 'retrieveSeriesMetadata', 'retrieveInstanceMetadata']) {
        const answer = await call(method, ids(t));
        const documents: DicomJson[] = ok(answer);
        const metadata = documents.find((d) => d['00080018']?.Value?.[0] === t.fixture.sopInstanceUID);
        expect(metadata, `${method} ${t.fixture.path}\n${told(answer)}`).toBeDefined();
        for (const [tag, element] of Object.entries(t.tags)) {
          if (tag.startsWith('0002')) continue; // file meta information is not part of the data set
          expect(metadata![tag] && canonical(metadata![tag]!), `${method} ${t.fixture.path}: ${tag}`).toEqual(canonical(element));
        }
        expect(metadata!['7FE00010']?.BulkDataURI, `${method} ${t.fixture.path}`).toMatch(/^http/);
      }
    }
  });

  it('retrieves each file in Explicit VR Little Endian when retrieveInstance names no transfer syntax (PS3.18 8.7.3.4)', async () => {
    for (const t of truths) {
      const answer = await call('retrieveInstance', ids(t));
      expectDefaultDicom(t, bytesOf(ok(answer)), `${t.fixture.path}\n${told(answer)}`);
    }
  });

  it('retrieves a series and a study the same way with retrieveSeries and retrieveStudy', async () => {
    for (const t of [truth('multiframe-40-rle'), truth('j2k-lossless')]) {
      for (const method of ['retrieveSeries', 'retrieveStudy']) {
        const answer = await call(method, ids(t));
        const parts: Part[] = ok(answer);
        const label = `${method} ${t.fixture.path}\n${told(answer)}`;
        expect(parts, label).toHaveLength(1);
        expectDefaultDicom(t, bytesOf(parts[0]!), label);
      }
    }
  });

  it('retrieves frames decoded to Explicit VR Little Endian with retrieveInstanceFrames and no mediaTypes (application/octet-stream)', async () => {
    for (const t of truths) {
      const frameNumbers = someFrames(t);
      const answer = await call('retrieveInstanceFrames', { ...ids(t), frameNumbers });
      const parts: Part[] = ok(answer);
      const label = `${t.fixture.path}\n${told(answer)}`;
      const syntax = parts[0]?.transferSyntaxUID ?? EXPLICIT_LE;
      expect(defaultSyntaxes(t), label).toContain(syntax);
      const frames = syntax === EXPLICIT_LE ? t.decoded : t.stored;
      expect(parts.map((p) => sha256(bytesOf(p))), label).toEqual(frameNumbers.map((n) => sha256(frames[n - 1]!)));
    }
  });

  it('retrieves frames as stored for every image media type and transfer syntax the client offers', async () => {
    // The client's own table (api.js, _httpGetMultipartImage): RLE only as image/x-dicom-rle; JPEG-LS as both names.
    const cases: Array<[string, string, string]> = [
      ['jpeg-baseline', 'image/jpeg', '1.2.840.10008.1.2.4.50'],
      ['jpeg-lossless-sv1', 'image/jpeg', '1.2.840.10008.1.2.4.70'],
      ['jpeg-ls-lossless', 'image/jls', '1.2.840.10008.1.2.4.80'],
      ['jpeg-ls-lossless', 'image/x-jls', '1.2.840.10008.1.2.4.80'],
      ['jpeg-ls-near', 'image/x-jls', '1.2.840.10008.1.2.4.81'],
      ['jpeg-ls-near', 'image/jls', '1.2.840.10008.1.2.4.81'],
      ['j2k-lossless', 'image/jp2', '1.2.840.10008.1.2.4.90'],
      ['j2k-lossy', 'image/jp2', '1.2.840.10008.1.2.4.91'],
      ['rle', 'image/x-dicom-rle', '1.2.840.10008.1.2.5'],
      ['multiframe-40-rle', 'image/x-dicom-rle', '1.2.840.10008.1.2.5'],
      // Any image type in any syntax: what is stored, under its own media type.
      ['j2k-lossless', 'image/*', '*'],
      ['multiframe-40-rle', 'image/*', '*'],
    ];
    // PS3.18 Table 8.7.3-2 names; the server answers these whatever alias was asked for.
    const standard: Record<string, string> = { '1.2.840.10008.1.2.4.50': 'image/jpeg', '1.2.840.10008.1.2.4.70': 'image/jpeg', '1.2.840.10008.1.2.4.80': 'image/jls', '1.2.840.10008.1.2.4.81': 'image/jls', '1.2.840.10008.1.2.4.90': 'image/jp2', '1.2.840.10008.1.2.4.91': 'image/jp2', '1.2.840.10008.1.2.5': 'image/dicom-rle' };
    for (const [name, mediaType, transferSyntaxUID] of cases) {
      const t = truth(name);
      const frameNumbers = someFrames(t);
      const answer = await call('retrieveInstanceFrames', { ...ids(t), frameNumbers, mediaTypes: [{ mediaType, transferSyntaxUID }] });
      const label = `${name} as ${mediaType}; transfer-syntax=${transferSyntaxUID}\n${told(answer)}`;
      const parts: Part[] = ok(answer);
      expect(parts.map((p) => sha256(bytesOf(p))), label).toEqual(frameNumbers.map((n) => sha256(t.stored[n - 1]!)));
      expect(parts[0]!.transferSyntaxUID, label).toBe(t.fixture.transferSyntaxUID);
      expect(parts[0]!.contentType, label).toBe(standard[t.fixture.transferSyntaxUID]);
    }
  });

  it('answers frames asked for with octet-stream and an image type together in one of the two, as it says', async () => {
    // Two top-level types make the client send both ranges in one Accept (api.js, retrieveInstanceFrames).
    const t = truth('jpeg-ls-lossless');
    const answer = await call('retrieveInstanceFrames', {
      ...ids(t),
      frameNumbers: [1],
      mediaTypes: [{ mediaType: 'application/octet-stream', transferSyntaxUID: EXPLICIT_LE }, { mediaType: 'image/jls', transferSyntaxUID: t.fixture.transferSyntaxUID }],
    });
    const [part] = ok(answer) as Part[];
    const expected = part!.transferSyntaxUID === EXPLICIT_LE ? t.decoded[0]! : t.stored[0]!;
    expect([EXPLICIT_LE, t.fixture.transferSyntaxUID], told(answer)).toContain(part!.transferSyntaxUID);
    expect(sha256(bytesOf(part!)), told(answer)).toBe(sha256(expected));
  });

  it('retrieves Pixel Data by its BulkDataURI with retrieveBulkData, whole and by byteRange (206)', async () => {
    for (const name of ['explicit-le', 'multiframe-40-native']) {
      const t = truth(name);
      const [metadata] = ok(await call('retrieveInstanceMetadata', ids(t))) as DicomJson[];
      const BulkDataURI = metadata!['7FE00010']!.BulkDataURI!;
      const pixels = Buffer.concat(t.stored);
      const whole = await call('retrieveBulkData', { BulkDataURI });
      expect(sha256(Buffer.concat((ok(whole) as Part[]).map(bytesOf))), `${name}\n${told(whole)}`).toBe(sha256(pixels));
      for (const [byteRange, expected] of [
        [[16, 99], pixels.subarray(16, 100)],
        [[pixels.length - 100], pixels.subarray(pixels.length - 100)],
      ] as const) {
        const ranged = await call('retrieveBulkData', { BulkDataURI, byteRange });
        const label = `${name} bytes ${byteRange.join('-')}\n${told(ranged)}`;
        expect(Buffer.concat((ok(ranged) as Part[]).map(bytesOf)).equals(expected), label).toBe(true);
        expect(ranged.exchanges.map((e) => e.status), label).toEqual([206]);
      }
    }
  });

  it('retrieves compressed Pixel Data by its BulkDataURI: as stored one part per frame with transfer-syntax=*, decoded without', async () => {
    for (const name of ['jpeg-ls-lossless', 'multiframe-40-rle', 'j2k-lossless']) {
      const t = truth(name);
      const [metadata] = ok(await call('retrieveInstanceMetadata', ids(t))) as DicomJson[];
      const BulkDataURI = metadata!['7FE00010']!.BulkDataURI!;
      const asStored = await call('retrieveBulkData', { BulkDataURI, mediaTypes: [{ mediaType: 'application/octet-stream', transferSyntaxUID: '*' }] });
      const parts: Part[] = ok(asStored);
      expect(parts.map((p) => sha256(bytesOf(p))), `${name}\n${told(asStored)}`).toEqual(t.stored.map(sha256));
      expect(parts[0]!.transferSyntaxUID, `${name}\n${told(asStored)}`).toBe(t.fixture.transferSyntaxUID);
      const decoded = await call('retrieveBulkData', { BulkDataURI });
      expect(sha256(Buffer.concat((ok(decoded) as Part[]).map(bytesOf))), `${name}\n${told(decoded)}`).toBe(sha256(Buffer.concat(t.decoded)));
    }
  });

  it('renders instances and frames with retrieveInstanceRendered/FramesRendered, grey rising with the stored value', async () => {
    const renders: Array<[string, string, Record<string, unknown>, number]> = [
      ['explicit-le', 'retrieveInstanceRendered', {}, 1],
      ['jpeg-ls-lossless', 'retrieveInstanceRendered', {}, 1],
      ['multiframe-40-native', 'retrieveInstanceFramesRendered', { frameNumbers: [20] }, 20],
      ['multiframe-40-rle', 'retrieveInstanceFramesRendered', { frameNumbers: [40] }, 40],
    ];
    for (const [name, method, extra, frame] of renders) {
      const t = truth(name);
      const answer = await call(method, { ...ids(t), ...extra, mediaTypes: [{ mediaType: 'image/png' }] });
      const [part] = ok(answer) as Part[];
      const image = await sharp(bytesOf(part!)).extractChannel(0).raw().toBuffer({ resolveWithObject: true });
      const label = `${method} ${name} frame ${frame}\n${told(answer)}`;
      expect(image.info.format, label).toBe('raw');
      expect([image.info.width, image.info.height], label).toEqual([t.fixture.columns, t.fixture.rows]);
      expect(risesWithValue(samples(t, frame), image.data), label).toBe(true);
    }
    // Without mediaTypes the client sends no Accept of its own: the browser's */* takes the server's choice.
    const t = truth('j2k-lossless');
    const plain = await call('retrieveInstanceRendered', ids(t));
    const metadata = await sharp(bytesOf((ok(plain) as Part[])[0]!)).metadata();
    expect([metadata.width, metadata.height], told(plain)).toEqual([t.fixture.columns, t.fixture.rows]);
  });

  it('retrieves thumbnails with retrieveInstanceThumbnail and retrieveInstanceFramesThumbnail', async () => {
    for (const [name, method, extra] of [
      ['jpeg-baseline', 'retrieveInstanceThumbnail', {}],
      ['multiframe-40-rle', 'retrieveInstanceFramesThumbnail', { frameNumbers: [3] }],
    ] as const) {
      const t = truth(name);
      const answer = await call(method, { ...ids(t), ...extra, mediaTypes: [{ mediaType: 'image/jpeg' }] });
      const metadata = await sharp(bytesOf((ok(answer) as Part[])[0]!)).metadata();
      const label = `${method} ${name}\n${told(answer)}`;
      expect(metadata.format, label).toBe('jpeg');
      // Never enlarged, and the file's proportions kept.
      expect(metadata.width! * t.fixture.rows, label).toBe(metadata.height! * t.fixture.columns);
      expect(metadata.width!, label).toBeLessThanOrEqual(t.fixture.columns);
    }
  });
});

/** A file sent without a named transfer syntax: Explicit VR Little Endian with the pixels dcmtk/gdcm decode, or a lossy file as stored. */
function expectDefaultDicom(t: Truth, bytes: Buffer, label: string): void {
  const file = path.join(work, `${path.basename(t.fixture.path, '.dcm')}.retrieved.dcm`);
  writeFileSync(file, bytes);
  const dump = execFileSync('dcmdump', ['-q', '-Un', '+P', '0002,0010', '+P', '0008,0018', file], { encoding: 'utf8' });
  const syntax = /\(0002,0010\) UI \[([\d.]+)\]/.exec(dump)?.[1];
  expect(defaultSyntaxes(t), label).toContain(syntax);
  if (syntax !== EXPLICIT_LE) return void expect(sha256(bytes), label).toBe(t.fixture.sha256);
  expect(dump, label).toContain(`[${t.fixture.sopInstanceUID}]`);
  expect(sha256(pixelItems(file, work, 'retrieved')[0]!), `${label}\npixel data as dcmtk/gdcm decode it`).toBe(sha256(Buffer.concat(t.decoded)));
}

/** The stored values of a decoded frame, one a pixel, signed or not as Pixel Representation says. */
function samples(t: Truth, frame: number): number[] {
  const bits = Number(t.tags['00280100']!.Value![0]);
  const signed = Number(t.tags['00280103']!.Value![0]) === 1;
  const bytes = t.decoded[frame - 1]!;
  return Array.from({ length: bytes.length / (bits / 8) }, (_, i) => (bits === 8 ? bytes[i]! : signed ? bytes.readInt16LE(i * 2) : bytes.readUInt16LE(i * 2)));
}

/** Whether the rendered grey is a non-decreasing function of the stored value: any window, any linear or sigmoid VOI. */
function risesWithValue(values: number[], grey: Uint8Array): boolean {
  const byValue = new Map<number, { min: number; max: number }>();
  values.forEach((v, i) => {
    const g = grey[i]!;
    const seen = byValue.get(v);
    byValue.set(v, seen ? { min: Math.min(seen.min, g), max: Math.max(seen.max, g) } : { min: g, max: g });
  });
  let below = -1;
  for (const [, { min, max }] of [...byValue].sort((a, b) => a[0] - b[0])) {
    if (min !== max || min < below) return false;
    below = max;
  }
  // A flat picture would pass the above trivially.
  return new Set(grey).size >= 16;
}
