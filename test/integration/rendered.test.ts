import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid, writePart10, type WriteElement } from '../../src/dicom/write.js';
import { syntheticInstance, type SyntheticOptions } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { objectKeys, objectVersion, readObject, writeObject } from '../helpers/stored.js';

/**
 * Rendered and thumbnail resources (PS3.18 10.4.1.1.3-4), WADO-URI (PS3.18 9) and their derived/ cache, HTTP in,
 * HTTP out, on a real server.
 */

type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; rows: number; columns: number; numberOfFrames: number; sha256: string };
type Ref = { studyUID: string; seriesUID: string; sopInstanceUID: string; bytes: Buffer };

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const realTool: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const VIEWER_URL = 'https://viewer.clinic.example';

/** A synthetic image with the UIDs it was made with. */
function image(o: SyntheticOptions & { studyUID: string; seriesUID: string }): Ref {
  const sopInstanceUID = newUid();
  return { studyUID: o.studyUID, seriesUID: o.seriesUID, sopInstanceUID, bytes: syntheticInstance({ ...o, sopInstanceUID }) };
}

/** A Basic Text SR: an instance with no pixel data at all. */
function report(studyUID: string, seriesUID: string, seriesNumber: number): Ref {
  const sopInstanceUID = newUid();
  const sopClassUID = '1.2.840.10008.5.1.4.1.1.88.11';
  const elements: WriteElement[] = [
    { tag: '00080016', vr: 'UI', value: sopClassUID },
    { tag: '00080018', vr: 'UI', value: sopInstanceUID },
    { tag: '00080060', vr: 'CS', value: 'SR' },
    { tag: '00100010', vr: 'PN', value: 'Report^Only' },
    { tag: '0020000D', vr: 'UI', value: studyUID },
    { tag: '0020000E', vr: 'UI', value: seriesUID },
    { tag: '00200011', vr: 'IS', value: String(seriesNumber) },
    { tag: '00200013', vr: 'IS', value: '1' },
    { tag: '0040A040', vr: 'CS', value: 'CONTAINER' },
  ];
  return { studyUID, seriesUID, sopInstanceUID, bytes: writePart10(elements, { transferSyntaxUID: '1.2.840.10008.1.2.1', sopClassUID, sopInstanceUID }) };
}

const instancePath = (i: { studyUID: string; seriesUID: string; sopInstanceUID: string }) => `/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`;
const wadoUri = (target: RunningServer, i: { studyUID: string; seriesUID: string; sopInstanceUID: string }, extra = '') =>
  `${target.url}/wado?requestType=WADO&studyUID=${i.studyUID}&seriesUID=${i.seriesUID}&objectUID=${i.sopInstanceUID}${extra}`;

async function bytesOf(response: Response): Promise<Buffer> {
  return Buffer.from(await response.arrayBuffer());
}

/** An image response: 200, its media type, its bytes, and what sharp reads from them. */
async function fetchImage(url: string, init: RequestInit = {}, useAdmin = true) {
  const response = useAdmin ? await adminFetch(url, init) : await fetch(url, init);
  const bytes = await bytesOf(response);
  expect(response.status, `${url}: ${bytes.toString('utf8', 0, 300)}`).toBe(200);
  const meta = await sharp(bytes).metadata();
  return { response, bytes, meta, type: response.headers.get('content-type') };
}

/** Grey samples of an image file, for comparing what was drawn rather than how it was compressed. */
async function pixels(bytes: Buffer): Promise<Buffer> {
  return sharp(bytes).greyscale().raw().toBuffer();
}

const MAGIC = {
  'image/jpeg': (b: Buffer) => b.subarray(0, 3).equals(Buffer.from([0xff, 0xd8, 0xff])),
  'image/png': (b: Buffer) => b.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])),
  'image/webp': (b: Buffer) => b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP',
} as const;

/** Keys of the derived objects under the instance's (series', study's) folder in the store, but files still being written. */
async function derivedKeys(target: RunningServer, i: { studyUID: string; seriesUID?: string; sopInstanceUID?: string }): Promise<string[]> {
  let prefix = `derived/studies/${i.studyUID}/`;
  if (i.seriesUID) prefix += `series/${i.seriesUID}/`;
  if (i.sopInstanceUID) prefix += `instances/${i.sopInstanceUID}/`;
  return (await objectKeys(target, prefix)).filter((key) => !key.endsWith('.tmp'));
}

/** The cache is written just after the answer goes out: wait for it rather than race it. */
async function waitForDerived(target: RunningServer, i: Ref, count = 1) {
  for (const started = Date.now(); Date.now() - started < 5_000; await new Promise((r) => setTimeout(r, 25))) {
    const keys = await derivedKeys(target, i);
    if (keys.length >= count) return keys;
  }
  throw new Error(`no derived object appeared for ${i.sopInstanceUID}`);
}

async function expectError(response: Response, status: number, detail: RegExp) {
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  expect(body.detail).toMatch(detail);
  return body;
}

let server: RunningServer;
const study = newUid();
/** Series 1: a report only; series 2: MR images 1-4, sent out of order; series 3: CT images 1-5. */
const srSeries = newUid();
const mrSeries = newUid();
const ctSeries = newUid();
const sr = report(study, srSeries, 1);
const mr = [4, 2, 1, 3].map((n) => image({ studyUID: study, seriesUID: mrSeries, seriesNumber: 2, instanceNumber: n, modality: 'MR' }));
const ct = [1, 2, 3, 4, 5].map((n) => image({ studyUID: study, seriesUID: ctSeries, seriesNumber: 3, instanceNumber: n, modality: 'CT' }));
const reportOnly = report(newUid(), newUid(), 1);
const wide = image({ studyUID: newUid(), seriesUID: newUid(), rows: 64, columns: 128 });
const big = image({ studyUID: newUid(), seriesUID: newUid(), rows: 256, columns: 256 });
const cine = image({ studyUID: newUid(), seriesUID: newUid(), modality: 'US', frames: 6, rows: 48, columns: 64 });
const single = image({ studyUID: newUid(), seriesUID: newUid() });
const kept = image({ studyUID: newUid(), seriesUID: newUid() });
const doomed = image({ studyUID: newUid(), seriesUID: newUid() });
const A = image({ studyUID: newUid(), seriesUID: newUid(), patientName: 'Token^Alice' });
const B = image({ studyUID: newUid(), seriesUID: newUid(), patientName: 'Other^Bob' });

beforeAll(async () => {
  server = await startServer({ env: { PACS_VIEWER_URL: VIEWER_URL } });
  const files = [
    ...realTool.map((f) => readFileSync(path.join(FIXTURES, f.path))),
    ...[sr, ...mr, ...ct, reportOnly, wide, big, cine, single, kept, doomed, A, B].map((r) => r.bytes),
  ];
  const response = await stow(server.dicomweb, files);
  expect(response.status, await response.clone().text()).toBe(200);
});
afterAll(async () => {
  await server?.stop();
});

describe('rendered resources', () => {
  it('renders an instance as JPEG by default, and as PNG or WebP when Accept asks, at its own size', async () => {
    const url = `${server.dicomweb}${instancePath(single)}/rendered`;
    for (const [accept, type, format] of [
      [undefined, 'image/jpeg', 'jpeg'],
      ['*/*', 'image/jpeg', 'jpeg'],
      ['image/png', 'image/png', 'png'],
      ['image/webp', 'image/webp', 'webp'],
      ['image/gif, image/webp;q=0.5, image/png;q=0.9', 'image/png', 'png'],
    ] as const) {
      const { bytes, meta, type: contentType } = await fetchImage(url, { headers: accept ? { Accept: accept } : {} });
      expect(contentType, String(accept)).toBe(type);
      expect(MAGIC[type](bytes), `${accept}: magic bytes of ${type}`).toBe(true);
      expect([meta.format, meta.width, meta.height], String(accept)).toEqual([format, 64, 64]);
    }
  });

  // Whether the pixels are right is for the decoder's tests against dcmtk; here every syntax goes through the route.
  it('renders every stored transfer syntax at its own size', async () => {
    for (const f of realTool) {
      const response = await adminFetch(`${server.dicomweb}${instancePath(f)}/rendered`, { headers: { Accept: 'image/png' } });
      const bytes = await bytesOf(response);
      expect(response.status, `${f.path} (${f.transferSyntaxUID}): ${bytes.toString('utf8', 0, 300)}`).toBe(200);
      const meta = await sharp(bytes).metadata();
      expect([meta.format, meta.width, meta.height], f.path).toEqual(['png', f.columns, f.rows]);
    }
  });

  it('renders the frame asked for; an instance alone stands for its first frame', async () => {
    const base = `${server.dicomweb}${instancePath(cine)}`;
    const accept = { headers: { Accept: 'image/png' } };
    const first = await fetchImage(`${base}/frames/1/rendered`, accept);
    const third = await fetchImage(`${base}/frames/3/rendered`, accept);
    const instance = await fetchImage(`${base}/rendered`, accept);
    expect([third.meta.width, third.meta.height]).toEqual([64, 48]);
    expect((await pixels(third.bytes)).equals(await pixels(first.bytes))).toBe(false);
    expect(instance.bytes.equals(first.bytes)).toBe(true);
    await expectError(await adminFetch(`${base}/frames/7/rendered`), 404, /has 6 frame/);
  });

  it('answers several frames as multipart/related, one image each', async () => {
    const response = await adminFetch(`${server.dicomweb}${instancePath(cine)}/frames/2,4/rendered`, { headers: { Accept: 'multipart/related; type="image/png"' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^multipart\/related; type="image\/png"; boundary=/);
    const body = await bytesOf(response);
    const starts = [...body.toString('latin1').matchAll(/\x89PNG/g)];
    expect(starts).toHaveLength(2);
    await expectError(await adminFetch(`${server.dicomweb}${instancePath(cine)}/frames/2,4/rendered`, { headers: { Accept: 'image/png' } }), 406, /several frames/);
  });

  it('fits the image inside the viewport, keeping its aspect ratio and never enlarging it', async () => {
    const base = `${server.dicomweb}${instancePath(wide)}/rendered`;
    const fitted = await fetchImage(`${base}?viewport=32,32`);
    expect([fitted.meta.width, fitted.meta.height]).toEqual([32, 16]);
    const tall = await fetchImage(`${base}?viewport=100,8`);
    expect([tall.meta.width, tall.meta.height]).toEqual([16, 8]);
    const larger = await fetchImage(`${base}?viewport=1024,1024`);
    expect([larger.meta.width, larger.meta.height]).toEqual([128, 64]);
  });

  it('shows the source region of a long-form viewport, flipped when its width is negative', async () => {
    const base = `${server.dicomweb}${instancePath(wide)}/rendered`;
    const accept = { headers: { Accept: 'image/png' } };
    const left = await fetchImage(`${base}?viewport=64,64,0,0,64,32`, accept);
    expect([left.meta.width, left.meta.height]).toEqual([64, 32]);
    const flipped = await fetchImage(`${base}?viewport=64,64,0,0,-64,32`, accept);
    expect([flipped.meta.width, flipped.meta.height]).toEqual([64, 32]);
    const mirrored = await sharp(left.bytes).flop().greyscale().raw().toBuffer();
    expect((await pixels(flipped.bytes)).equals(mirrored)).toBe(true);
  });

  it('applies the window asked for, with its function', async () => {
    const base = `${server.dicomweb}${instancePath(single)}/rendered`;
    const accept = { headers: { Accept: 'image/png' } };
    const own = await pixels((await fetchImage(base, accept)).bytes);
    const narrow = await pixels((await fetchImage(`${base}?window=900,100,LINEAR`, accept)).bytes);
    const sigmoid = await pixels((await fetchImage(`${base}?window=900,400,sigmoid`, accept)).bytes);
    expect(narrow.equals(own)).toBe(false);
    expect(sigmoid.equals(narrow)).toBe(false);
    // The background (800-1311 stored, rescale -1024) is below 850 after rescale: black in the narrow window.
    expect(narrow.filter((v) => v === 0).length / narrow.length).toBeGreaterThan(0.5);
  });

  it('renders a series by its middle instance in InstanceNumber order, and a study by its first series with images', async () => {
    const accept = { headers: { Accept: 'image/png' } };
    const ctMiddle = ct[2]!; // InstanceNumber 3 of 1-5
    const mrMiddle = mr.find((_, i) => [4, 2, 1, 3][i] === 3)!; // ⌊4/2⌋ → the third of 1-4
    const ofSeries = await fetchImage(`${server.dicomweb}/studies/${study}/series/${ctSeries}/rendered`, accept);
    const ofCtMiddle = await fetchImage(`${server.dicomweb}${instancePath(ctMiddle)}/rendered`, accept);
    expect(ofSeries.bytes.equals(ofCtMiddle.bytes)).toBe(true);
    const ofStudy = await fetchImage(`${server.dicomweb}/studies/${study}/rendered`, accept);
    const ofMrMiddle = await fetchImage(`${server.dicomweb}${instancePath(mrMiddle)}/rendered`, accept);
    expect(ofStudy.bytes.equals(ofMrMiddle.bytes)).toBe(true);
    expect(ofStudy.bytes.equals(ofSeries.bytes)).toBe(false);
  });

  it('answers 404 with a reason for a report, a series or a study without images, and an unknown study', async () => {
    await expectError(await adminFetch(`${server.dicomweb}${instancePath(sr)}/rendered`), 404, /no pixel data/);
    await expectError(await adminFetch(`${server.dicomweb}/studies/${study}/series/${srSeries}/thumbnail`), 404, /holds no image/);
    await expectError(await adminFetch(`${server.dicomweb}/studies/${reportOnly.studyUID}/rendered`), 404, /holds no image/);
    await expectError(await adminFetch(`${server.dicomweb}/studies/${newUid()}/thumbnail`), 404, /no study/);
  });

  it('answers 400 naming the bad parameter, and 406 with the types it can make', async () => {
    const base = `${server.dicomweb}${instancePath(single)}`;
    for (const [query, reason] of [
      ['quality=0', /quality must be a whole number from 1 to 100/],
      ['quality=high', /quality/],
      ['viewport=100', /viewport must be/],
      ['viewport=0,10', /viewport width/],
      ['viewport=10,10,0,0,0,10', /source width/],
      ['window=40', /window must be/],
      ['window=40,0,LINEAR', /width must be at least 1/],
      ['window=40,400,CUBIC', /window function must be LINEAR, LINEAR_EXACT or SIGMOID/],
      ['window=abc,400', /window center/],
    ] as const) {
      await expectError(await adminFetch(`${base}/rendered?${query}`), 400, reason);
    }
    await expectError(await adminFetch(`${base}/frames/one/rendered`), 400, /frame list/);
    const body = await expectError(await adminFetch(`${base}/rendered`, { headers: { Accept: 'image/gif' } }), 406, /image\/jpeg, image\/png, image\/webp/);
    expect(body.error).toBe('not-acceptable');
    // The accept query parameter (PS3.18 8.3.3.1) is taken over the header.
    const { type } = await fetchImage(`${base}/rendered?accept=image/webp`, { headers: { Accept: 'image/gif' } });
    expect(type).toBe('image/webp');
  });
});

describe('thumbnails', () => {
  it('are at most 128 pixels on the longer side unless a viewport says otherwise', async () => {
    const small = await fetchImage(`${server.dicomweb}${instancePath(big)}/thumbnail`);
    expect([small.type, small.meta.width, small.meta.height]).toEqual(['image/jpeg', 128, 128]);
    const asked = await fetchImage(`${server.dicomweb}${instancePath(big)}/thumbnail?viewport=64,64`);
    expect([asked.meta.width, asked.meta.height]).toEqual([64, 64]);
    const ofWide = await fetchImage(`${server.dicomweb}${instancePath(wide)}/thumbnail`);
    expect([ofWide.meta.width, ofWide.meta.height]).toEqual([128, 64]);
  });

  it('of a study is the middle slice of its first image series, byte for byte', async () => {
    const mrMiddle = mr.find((_, i) => [4, 2, 1, 3][i] === 3)!;
    const ofStudy = await fetchImage(`${server.dicomweb}/studies/${study}/thumbnail`);
    const ofInstance = await fetchImage(`${server.dicomweb}${instancePath(mrMiddle)}/thumbnail`);
    expect(ofStudy.bytes.equals(ofInstance.bytes)).toBe(true);
    for (const other of mr.filter((m) => m !== mrMiddle)) {
      const ofOther = await fetchImage(`${server.dicomweb}${instancePath(other)}/thumbnail`);
      expect(ofOther.bytes.equals(ofStudy.bytes)).toBe(false);
    }
  });

  it('of a frame list shows its first frame', async () => {
    const list = await fetchImage(`${server.dicomweb}${instancePath(cine)}/frames/5,2/thumbnail`);
    const five = await fetchImage(`${server.dicomweb}${instancePath(cine)}/frames/5/thumbnail`);
    expect(list.bytes.equals(five.bytes)).toBe(true);
  });
});

describe('the derived/ cache', () => {
  it('keeps a rendering under derived/ and answers the next request from it, without rendering again', async () => {
    const url = `${server.dicomweb}${instancePath(kept)}/thumbnail?quality=61`;
    const first = await fetchImage(url);
    const [cached, ...more] = await waitForDerived(server, kept);
    expect(more).toHaveLength(0);
    expect(cached).toMatch(
      new RegExp(`^derived/studies/${kept.studyUID}/series/${kept.seriesUID}/instances/${kept.sopInstanceUID}/${sha256(kept.bytes).slice(0, 16)}-f1-[0-9a-f]{16}\\.jpg$`),
    );
    expect((await readObject(server, cached!)).equals(first.bytes)).toBe(true);
    const version = await objectVersion(server, cached!);

    const second = await fetchImage(url);
    expect(second.bytes.equals(first.bytes)).toBe(true);
    expect(await derivedKeys(server, kept)).toEqual([cached]);
    expect(await objectVersion(server, cached!)).toBe(version);

    // What is served is what the cache holds: a marked copy comes back as it is.
    const marked = Buffer.concat([first.bytes, Buffer.from('cached copy')]);
    await writeObject(server, cached!, marked);
    const third = await adminFetch(url);
    expect((await bytesOf(third)).equals(marked)).toBe(true);
  });

  it('renders once for requests that arrive together, and answers each the same', async () => {
    const url = `${server.dicomweb}${instancePath(big)}/rendered?quality=42&viewport=200,200`;
    const responses = await Promise.all(Array.from({ length: 6 }, () => adminFetch(url)));
    const bodies = await Promise.all(responses.map(bytesOf));
    expect(responses.map((r) => r.status)).toEqual(Array(6).fill(200));
    for (const body of bodies) expect(body.equals(bodies[0]!)).toBe(true);
    const files = await waitForDerived(server, big);
    expect(files.filter((key) => key.endsWith('.jpg')).length).toBeGreaterThan(0);
  });

  it('answers 304 to a current ETag, and another ETag for other options', async () => {
    const url = `${server.dicomweb}${instancePath(single)}/rendered`;
    const first = await fetchImage(url);
    const etag = first.response.headers.get('etag')!;
    expect(etag).toMatch(/^"[^"]+"$/);
    expect(first.response.headers.get('cache-control')).toMatch(/\bprivate\b/);
    const again = await adminFetch(url, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect(again.headers.get('etag')).toBe(etag);
    expect((await bytesOf(again)).length).toBe(0);
    const png = await fetchImage(url, { headers: { Accept: 'image/png', 'If-None-Match': etag } });
    expect(png.response.headers.get('etag')).not.toBe(etag);
    const windowed = await fetchImage(`${url}?window=900,100,LINEAR`, { headers: { 'If-None-Match': etag } });
    expect(windowed.response.headers.get('etag')).not.toBe(etag);
  });

  it('goes with the instance when it is deleted', async () => {
    await fetchImage(`${server.dicomweb}${instancePath(doomed)}/thumbnail`);
    await fetchImage(`${server.dicomweb}${instancePath(doomed)}/rendered?quality=50`);
    await waitForDerived(server, doomed, 2);
    const response = await adminFetch(`${server.dicomweb}${instancePath(doomed)}?reason=test+deletion`, { method: 'DELETE' });
    expect(response.status, await response.text()).toBe(200);
    expect(await derivedKeys(server, doomed)).toEqual([]);
    await expectError(await adminFetch(`${server.dicomweb}${instancePath(doomed)}/thumbnail`), 404, /no instance/);
  });
});

describe('a server that allows overwriting and decodes frames of at most 100 KB', () => {
  let other: RunningServer;
  beforeAll(async () => {
    other = await startServer({ env: { PACS_OVERWRITE_DIFFERENT: 'true', PACS_RENDER_MAX_FRAME_BYTES: '100KB' } });
  });
  afterAll(async () => {
    await other?.stop();
  });

  it('answers 413 with the reason for a frame over the limit, before decoding it', async () => {
    const large = image({ studyUID: newUid(), seriesUID: newUid(), rows: 256, columns: 256 });
    expect((await stow(other.dicomweb, [large.bytes])).status).toBe(200);
    const body = await expectError(await adminFetch(`${other.dicomweb}${instancePath(large)}/thumbnail`), 413, /131072 bytes, over this server's limit of 102400/);
    expect(body.error).toBe('too-large');
    expect(await derivedKeys(other, large)).toEqual([]);
  });

  it('drops the renderings of an instance replaced with other pixels, and renders the new ones', async () => {
    const uids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const before = { ...uids, bytes: syntheticInstance({ ...uids, instanceNumber: 1 }) };
    const after = { ...uids, bytes: syntheticInstance({ ...uids, instanceNumber: 4 }) };
    expect((await stow(other.dicomweb, [before.bytes])).status).toBe(200);
    const url = `${other.dicomweb}${instancePath(uids)}/rendered`;
    const old = await fetchImage(url, { headers: { Accept: 'image/png' } });
    const [oldFile] = await waitForDerived(other, before);
    expect((await stow(other.dicomweb, [after.bytes])).status).toBe(200);
    expect(await derivedKeys(other, before)).toEqual([]);
    const fresh = await fetchImage(url, { headers: { Accept: 'image/png' } });
    expect((await pixels(fresh.bytes)).equals(await pixels(old.bytes))).toBe(false);
    expect(fresh.response.headers.get('etag')).not.toBe(old.response.headers.get('etag'));
    const [newFile] = await waitForDerived(other, after);
    expect(path.posix.basename(newFile!)).not.toBe(path.posix.basename(oldFile!));
    expect(path.posix.basename(newFile!).startsWith(sha256(after.bytes).slice(0, 16))).toBe(true);
  });
});

describe('WADO-URI', () => {
  it('returns the stored file byte for byte as application/dicom with transferSyntax=* or its own, else Explicit VR Little Endian', async () => {
    for (const f of [realTool.find((r) => r.path === 'jpeg-baseline.dcm')!, realTool.find((r) => r.path === 'deflated.dcm')!]) {
      for (const syntax of ['*', f.transferSyntaxUID]) {
        const response = await adminFetch(wadoUri(server, f, `&contentType=application/dicom&transferSyntax=${syntax}`));
        expect(response.status).toBe(200);
        expect(response.headers.get('content-type')).toBe('application/dicom');
        expect(sha256(await bytesOf(response)), f.path).toBe(f.sha256);
      }
      // PS3.18 9.1.2: without transferSyntax, Explicit VR Little Endian.
      const converted = await adminFetch(wadoUri(server, f, '&contentType=application/dicom'));
      expect(converted.headers.get('content-type')).toBe('application/dicom; transfer-syntax=1.2.840.10008.1.2.1');
      expect((await bytesOf(converted)).includes(Buffer.from('1.2.840.10008.1.2.1\0'))).toBe(true);
    }
    // A report has no pixels: its file is what WADO-URI gives by default.
    const report = await adminFetch(wadoUri(server, sr));
    expect(report.headers.get('content-type')).toBe('application/dicom');
    expect(sha256(await bytesOf(report))).toBe(sha256(sr.bytes));
    await expectError(await adminFetch(wadoUri(server, sr, '&contentType=image/jpeg')), 406, /available as application\/dicom/);
  });

  it('renders JPEG by default and PNG when asked, fitted inside rows and columns', async () => {
    const jpeg = await fetchImage(wadoUri(server, wide));
    expect([jpeg.type, jpeg.meta.format, jpeg.meta.width, jpeg.meta.height]).toEqual(['image/jpeg', 'jpeg', 128, 64]);
    expect(MAGIC['image/jpeg'](jpeg.bytes)).toBe(true);
    const png = await fetchImage(wadoUri(server, wide, '&contentType=image/png&rows=32&columns=32'));
    expect([png.type, png.meta.width, png.meta.height]).toEqual(['image/png', 32, 16]);
    const byRows = await fetchImage(wadoUri(server, wide, '&rows=16'));
    expect([byRows.meta.width, byRows.meta.height]).toEqual([32, 16]);
  });

  it('applies frameNumber, windowCenter/windowWidth and imageQuality, sharing the cache with WADO-RS', async () => {
    const third = await fetchImage(wadoUri(server, cine, '&frameNumber=3'));
    const rs = await fetchImage(`${server.dicomweb}${instancePath(cine)}/frames/3/rendered`);
    expect(third.bytes.equals(rs.bytes)).toBe(true);
    const own = await pixels((await fetchImage(wadoUri(server, single, '&contentType=image/png'))).bytes);
    const windowed = await pixels((await fetchImage(wadoUri(server, single, '&contentType=image/png&windowCenter=900&windowWidth=100'))).bytes);
    expect(windowed.equals(own)).toBe(false);
    const low = await fetchImage(wadoUri(server, big, '&imageQuality=5'));
    const high = await fetchImage(wadoUri(server, big, '&imageQuality=95'));
    expect(low.bytes.length).toBeLessThan(high.bytes.length);
  });

  it('answers 400 naming a missing or bad parameter', async () => {
    const ok = `studyUID=${single.studyUID}&seriesUID=${single.seriesUID}&objectUID=${single.sopInstanceUID}`;
    for (const [query, reason] of [
      [ok, /requestType is missing/],
      [`requestType=WADO-RS&${ok}`, /requestType must be WADO/],
      [`requestType=WADO&studyUID=${single.studyUID}&seriesUID=${single.seriesUID}`, /objectUID is missing/],
      [`requestType=WADO&studyUID=1.02.3&seriesUID=${single.seriesUID}&objectUID=${single.sopInstanceUID}`, /studyUID "1.02.3" is not a valid DICOM UID/],
      [`requestType=WADO&${ok}&windowCenter=40`, /windowWidth is missing/],
      [`requestType=WADO&${ok}&windowCenter=40&windowWidth=x`, /windowWidth must be a decimal number/],
      [`requestType=WADO&${ok}&imageQuality=0`, /imageQuality must be a whole number/],
      [`requestType=WADO&${ok}&rows=-1`, /rows must be a whole number/],
      [`requestType=WADO&${ok}&frameNumber=first`, /frameNumber must be a whole number/],
      [`requestType=WADO&${ok}&anonymize=yes`, /anonymize is not supported/],
    ] as const) {
      await expectError(await adminFetch(`${server.url}/wado?${query}`), 400, reason);
    }
    await expectError(await adminFetch(wadoUri(server, single, '&frameNumber=2')), 404, /has 1 frame/);
    await expectError(await adminFetch(wadoUri(server, single, '&contentType=image/gif')), 406, /image\/jpeg, image\/png, application\/dicom/);
    await expectError(await adminFetch(wadoUri(server, { ...single, sopInstanceUID: newUid() })), 404, /no object/);
  });
});

describe('access', () => {
  let token: string;
  beforeAll(async () => {
    const response = await adminFetch(`${server.url}/api/v1/studies/${A.studyUID}/viewer-url`);
    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(200);
    token = new URL(body.viewer_url).searchParams.get('token')!;
  });

  it('needs a credential for /wado and the rendered resources', async () => {
    for (const url of [wadoUri(server, A), `${server.dicomweb}${instancePath(A)}/rendered`, `${server.dicomweb}/studies/${A.studyUID}/thumbnail`]) {
      const response = await fetch(url);
      expect(response.status, url).toBe(401);
    }
  });

  it("lets a viewer token see its own study's images by ?token=, and no other study's", async () => {
    const q = `token=${encodeURIComponent(token)}`;
    for (const url of [
      `${wadoUri(server, A)}&${q}`,
      `${wadoUri(server, A, '&contentType=application/dicom')}&${q}`,
      `${server.dicomweb}${instancePath(A)}/rendered?${q}`,
      `${server.dicomweb}/studies/${A.studyUID}/thumbnail?${q}`,
      `${server.dicomweb}/studies/${A.studyUID}/series/${A.seriesUID}/thumbnail?${q}`,
    ]) {
      const response = await fetch(url);
      expect(response.status, url).toBe(200);
      await response.arrayBuffer();
    }
    for (const url of [
      `${wadoUri(server, B)}&${q}`,
      `${wadoUri(server, B, '&contentType=application/dicom')}&${q}`,
      // The token's study in the path does not open another study named in the query, nor the other way round.
      `${server.url}/wado?requestType=WADO&studyUID=${B.studyUID}&seriesUID=${A.seriesUID}&objectUID=${A.sopInstanceUID}&${q}`,
      `${server.dicomweb}${instancePath(B)}/rendered?${q}`,
      `${server.dicomweb}/studies/${B.studyUID}/thumbnail?${q}`,
    ]) {
      await expectError(await fetch(url), 404, /^no study with that UID is stored$/);
    }
    // Nor does naming the token's study reach an object of another.
    await expectError(await fetch(`${server.url}/wado?requestType=WADO&studyUID=${A.studyUID}&seriesUID=${B.seriesUID}&objectUID=${B.sopInstanceUID}&${q}`), 404, /no object/);
  });

  it('records WADO-URI reads in the audit trail with their study, series and object, never the token', async () => {
    const response = await fetch(`${wadoUri(server, A, '&contentType=image/png')}&token=${encodeURIComponent(token)}`);
    expect(response.status).toBe(200);
    const events: any[] = await (await adminFetch(`${server.url}/api/v1/audit?study=${A.studyUID}&limit=100`)).json();
    const event = events.find((e) => e.path === '/wado' && /contentType=image%2Fpng/.test(e.query ?? ''));
    expect(event, JSON.stringify(events)).toMatchObject({ studyUid: A.studyUID, seriesUid: A.seriesUID, sopUid: A.sopInstanceUID, status: 200, method: 'GET' });
    expect(event.credential).toMatch(/^token:/);
    expect(event.query).not.toContain('token=');
  });
});
