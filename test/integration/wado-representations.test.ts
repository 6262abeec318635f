import fs from 'node:fs/promises';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * The other forms PS3.18 requires of WADO-RS besides DICOM JSON and files as stored: metadata as the Native DICOM
 * Model (XML), the bulk data of whole instances, byte ranges of bulk data, and the default syntax of an instance.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; numberOfFrames: number };

let server: RunningServer;
const byName = new Map<string, Fixture & { bytes: Buffer }>();
const NAMES = [
  'explicit-le.dcm', 'jpeg-ls-lossless.dcm', 'multiframe-40-rle.dcm', 'ct-series-1.dcm', 'ct-series-2.dcm', 'ct-series-3.dcm',
  'explicit-le-rgb.dcm', 'jpeg-ls-rgb-ilv-none.dcm', 'jpeg-baseline-ybr422.dcm',
];

beforeAll(async () => {
  const manifest = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Fixture[];
  for (const name of NAMES) byName.set(name, { ...manifest.find((f) => f.path === name)!, bytes: await fs.readFile(path.join(FIXTURES, name)) });
  server = await startServer();
  expect((await stow(server.dicomweb, [...byName.values()].map((f) => f.bytes))).status).toBe(200);
});

afterAll(async () => {
  await server?.stop();
});

const fixture = (name: string) => byName.get(name)!;
const seriesUrl = (f: Fixture) => `${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}`;
const instanceUrl = (f: Fixture) => `${seriesUrl(f)}/instances/${f.sopInstanceUID}`;
const get = (url: string, headers: Record<string, string>) => adminFetch(url, { headers });

function pixelDataOf(bytes: Buffer): Buffer {
  const element = dicomParser.parseDicom(bytes).elements.x7fe00010!;
  return bytes.subarray(element.dataOffset, element.dataOffset + element.length);
}

describe('metadata as multipart/related; type="application/dicom+xml"', () => {
  it('is one well-formed Native DICOM Model document per instance, with the values of the JSON', async () => {
    const ct = fixture('ct-series-1.dcm');
    const response = await get(`${seriesUrl(ct)}/metadata`, { Accept: 'multipart/related; type="application/dicom+xml"' });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^multipart\/related; type="application\/dicom\+xml"; boundary=/);
    const etag = response.headers.get('etag');
    const parts = await readMultipartResponse(response);
    expect(parts).toHaveLength(3);
    const parser = new XMLParser({ ignoreAttributes: false, isArray: (name) => name === 'DicomAttribute' || name === 'Value' });
    const uids = parts.map((part) => {
      expect(part.headers['content-type']).toBe('application/dicom+xml; charset=utf-8');
      const text = part.body.toString('utf8');
      expect(XMLValidator.validate(text)).toBe(true);
      const attributes = parser.parse(text).NativeDicomModel.DicomAttribute as Array<Record<string, any>>;
      const pixelData = attributes.find((a) => a['@_tag'] === '7FE00010')!;
      expect(pixelData.BulkData['@_uri']).toMatch(new RegExp(`^${server.dicomweb}/studies/.*/bulkdata/7FE00010$`));
      return String(attributes.find((a) => a['@_keyword'] === 'SOPInstanceUID')!.Value[0]['#text']);
    });
    expect(uids.sort()).toEqual(['ct-series-1.dcm', 'ct-series-2.dcm', 'ct-series-3.dcm'].map((n) => fixture(n).sopInstanceUID).sort());

    // Its ETag is not the JSON's: a cache must not answer one with the other.
    const json = await get(`${seriesUrl(ct)}/metadata`, { Accept: 'application/dicom+json' });
    expect(json.headers.get('etag')).not.toBe(etag);
    expect((await get(`${seriesUrl(ct)}/metadata`, { Accept: 'multipart/related; type="application/dicom+xml"', 'If-None-Match': etag! })).status).toBe(304);
  });

  it('answers 406 to XML outside multipart/related, naming what it sends', async () => {
    const response = await get(`${seriesUrl(fixture('ct-series-1.dcm'))}/metadata`, { Accept: 'application/dicom+xml' });
    expect(response.status).toBe(406);
    expect((await response.json()).detail ?? '').toMatch(/type="application\/dicom\+xml"/);
  });
});

describe('instances as multipart/related; type="application/octet-stream"', () => {
  it("sends each instance's bulk data, named by its BulkDataURI: native pixel data whole, compressed frames one by one as stored", async () => {
    const rle = fixture('multiframe-40-rle.dcm');
    const stored = await get(instanceUrl(rle), { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' });
    expect(stored.status).toBe(200);
    const frames = await readMultipartResponse(stored);
    expect(frames).toHaveLength(40);
    expect(new Set(frames.map((p) => p.headers['content-type']))).toEqual(new Set(['application/octet-stream; transfer-syntax=1.2.840.10008.1.2.5']));
    // Each frame named by its own frames resource.
    expect(frames.map((p) => p.headers['content-location'])).toEqual(Array.from({ length: 40 }, (_, i) => `${instanceUrl(rle)}/frames/${i + 1}`));

    const native = fixture('explicit-le.dcm');
    const [whole, ...none] = await readMultipartResponse(await get(instanceUrl(native), { Accept: 'multipart/related; type="application/octet-stream"' }));
    expect(none).toHaveLength(0);
    expect(whole!.headers['content-location']).toBe(`${instanceUrl(native)}/bulkdata/7FE00010`);
    expect(whole!.body.equals(pixelDataOf(native.bytes))).toBe(true);
  });

  it('decodes compressed frames when no syntax is named, as Explicit VR Little Endian', async () => {
    const jls = fixture('jpeg-ls-lossless.dcm');
    const [part, ...none] = await readMultipartResponse(await get(instanceUrl(jls), { Accept: 'multipart/related; type="application/octet-stream"' }));
    expect(none).toHaveLength(0);
    expect(part!.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${EXPLICIT_LE}`);
    expect(part!.body.length).toBe(64 * 64 * 2);
  });
});

describe('frames decoded to Explicit VR Little Endian', () => {
  const OCTETS = 'multipart/related; type="application/octet-stream"';

  it('are laid out as the metadata says, whatever the codec gives (JPEG-LS colour by plane, PlanarConfiguration 0)', async () => {
    const jls = fixture('jpeg-ls-rgb-ilv-none.dcm');
    const [frame] = await readMultipartResponse(await get(`${instanceUrl(jls)}/frames/1`, { Accept: OCTETS }));
    expect(frame!.headers['content-type']).toBe(`application/octet-stream; transfer-syntax=${EXPLICIT_LE}`);
    // Made from the same RGB pixels, colour by pixel (make-fixtures.sh).
    expect(frame!.body.equals(pixelDataOf(fixture('explicit-le-rgb.dcm').bytes))).toBe(true);
  });

  it('are sent as stored when decoding would change the colour model the metadata names (YBR JPEG decodes to RGB)', async () => {
    const ybr = fixture('jpeg-baseline-ybr422.dcm');
    const [frame] = await readMultipartResponse(await get(`${instanceUrl(ybr)}/frames/1`, { Accept: OCTETS }));
    expect(frame!.headers['content-type']).toBe('application/octet-stream; transfer-syntax=1.2.840.10008.1.2.4.50');
    const named = await get(`${instanceUrl(ybr)}/frames/1`, { Accept: `${OCTETS}; transfer-syntax=${EXPLICIT_LE}` });
    expect(named.status).toBe(406);
    // The whole instance converts: its PhotometricInterpretation says RGB with the pixels.
    const [part] = await readMultipartResponse(await get(instanceUrl(ybr), { Accept: `multipart/related; type="application/dicom"; transfer-syntax=${EXPLICIT_LE}` }));
    expect(dicomParser.parseDicom(part!.body).string('x00280004')).toBe('RGB');
  });
});

describe('bulk data byte ranges', () => {
  it('answers a single range with 206 and Content-Range, as dicomweb-client asks, and 416 past the end', async () => {
    const native = fixture('explicit-le.dcm');
    const url = `${instanceUrl(native)}/bulkdata/7FE00010`;
    const pixels = pixelDataOf(native.bytes);
    let single: Response | undefined;
    for (const [range, start, end] of [['bytes=16-99', 16, 100], ['bytes=8000-', 8000, pixels.length], ['bytes=-10', pixels.length - 10, pixels.length]] as const) {
      single = await get(url, { Accept: 'application/octet-stream', Range: range });
      expect(single.status, range).toBe(206);
      expect(single.headers.get('content-range')).toBe(`bytes ${start}-${end - 1}/${pixels.length}`);
      expect(Buffer.from(await single.arrayBuffer()).equals(pixels.subarray(start, end)), range).toBe(true);
    }
    const multipart = await get(url, { Accept: 'multipart/related; type="application/octet-stream"', Range: 'bytes=16-99' });
    expect(multipart.status).toBe(206);
    const [part] = await readMultipartResponse(multipart);
    expect(part!.headers['content-range']).toBe(`bytes 16-99/${pixels.length}`);
    expect(part!.body.equals(pixels.subarray(16, 100))).toBe(true);

    const past = await get(url, { Accept: 'application/octet-stream', Range: `bytes=${pixels.length}-` });
    expect(past.status).toBe(416);
    expect(past.headers.get('content-range')).toBe(`bytes */${pixels.length}`);
    // Several ranges at once may be answered whole (RFC 9110 14.2), an invalid one is ignored (14.1.1).
    expect((await get(url, { Accept: 'application/octet-stream', Range: 'bytes=0-1,4-5' })).status).toBe(200);
    expect((await get(url, { Accept: 'application/octet-stream', Range: 'bytes=9-3' })).status).toBe(200);
    // A resumed download whose validator is no longer the value's gets all of it.
    const etag = single!.headers.get('etag')!;
    expect((await get(url, { Accept: 'application/octet-stream', Range: 'bytes=16-99', 'If-Range': etag })).status).toBe(206);
    expect((await get(url, { Accept: 'application/octet-stream', Range: 'bytes=16-99', 'If-Range': '"another"' })).status).toBe(200);
  });
});

describe('an instance retrieved without naming a syntax', () => {
  it('comes as Explicit VR Little Endian, the default of PS3.18, and as stored for transfer-syntax=*', async () => {
    const jls = fixture('jpeg-ls-lossless.dcm');
    for (const accept of [undefined, '*/*', 'multipart/related; type="application/dicom"']) {
      const [part] = await readMultipartResponse(await get(instanceUrl(jls), accept ? { Accept: accept } : {}));
      expect(part!.headers['content-type'], accept).toBe(`application/dicom; transfer-syntax=${EXPLICIT_LE}`);
      expect(dicomParser.parseDicom(part!.body).string('x00020010')).toBe(EXPLICIT_LE);
    }
    const [stored] = await readMultipartResponse(await get(instanceUrl(jls), { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' }));
    expect(stored!.body.equals(jls.bytes)).toBe(true);
  });
});
