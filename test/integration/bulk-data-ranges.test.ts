import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid, type WriteElement } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { changeIndexRows, indexRows, objectKeys, readObject, writeObject } from '../helpers/stored.js';

/**
 * Reads never parse a stored file again (DESIGN decision 3): bulk data other than pixels (a large private value, an
 * overlay) is a ranged read of the bytes ingest recorded, and a deflated instance is inflated once, into an inflated
 * copy in the derived cache, whose ranges every later frame read takes. To show that no read parses or inflates the
 * file, the bytes around what is read are destroyed behind the server's back, and the answers must not change.
 */

const FRAMES = 6;
const studyUID = newUid();
const seriesUID = newUid();
let server: RunningServer;
let work: string;

/** A private value and an overlay far above the inline limit, random so that a misplaced byte shows. */
const privateValue = randomBytes(3 * 1024 * 1024 + 6);
const overlay = randomBytes(64 * 1024);
const bulky: WriteElement[] = [
  { tag: '00090010', vr: 'LO', value: 'PACSLITE TEST' },
  { tag: '00091001', vr: 'OB', value: privateValue },
  { tag: '60000010', vr: 'US', value: 512 },
  { tag: '60000011', vr: 'US', value: 1024 },
  { tag: '60000100', vr: 'US', value: 1 },
  { tag: '60003000', vr: 'OW', value: overlay },
];

const instance = (sopInstanceUID: string) => syntheticInstance({ studyUID, seriesUID, sopInstanceUID, frames: FRAMES, rows: 128, columns: 128, extra: bulky });
const plainUID = newUid();
const legacyUID = newUid();
const twinUID = newUid();
const deflatedUID = newUid();
const base = (sop: string, at = server) => `${at.dicomweb}/studies/${studyUID}/series/${seriesUID}/instances/${sop}`;

/** dcmtk's own Deflated Explicit VR Little Endian (PS3.5 A.5) of a file. */
function deflate(file: Buffer): Buffer {
  const input = path.join(work, 'in.dcm');
  const output = path.join(work, 'deflated.dcm');
  fs.writeFileSync(input, file);
  execFileSync('dcmconv', ['-q', '+td', input, output]);
  return fs.readFileSync(output);
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'bulk-ranges-'));
  server = await startServer({ env: { PACS_VERIFY_INTERVAL: 'off' } });
  const deflated = deflate(instance(deflatedUID));
  expect(deflated.includes(Buffer.from('1.2.840.10008.1.2.1.99'))).toBe(true);
  const response = await stow(server.dicomweb, [instance(plainUID), instance(legacyUID), instance(twinUID), deflated]);
  expect(response.status, await response.clone().text()).toBe(200);
}, 120_000);
afterAll(async () => {
  await server?.stop();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function bulkData(sop: string, tagPath: string, at = server): Promise<Buffer> {
  const response = await adminFetch(`${base(sop, at)}/bulkdata/${tagPath}`, { headers: { Accept: 'application/octet-stream' } });
  expect(response.status, await response.clone().text()).toBe(200);
  return Buffer.from(await response.arrayBuffer());
}

async function frames(sop: string, at = server): Promise<Buffer[]> {
  const list = Array.from({ length: FRAMES }, (_, i) => i + 1).join(',');
  const response = await adminFetch(`${base(sop, at)}/frames/${list}`, { headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
  expect(response.status, await response.clone().text()).toBe(200);
  return (await readMultipartResponse(response)).map((part) => part.body);
}

type Row = { objectKey: string; bulkData: string | null; sha256: string };
async function rowOf(sop: string): Promise<Row> {
  const [row] = await indexRows<Row>(server, 'SELECT object_key AS "objectKey", bulk_data AS "bulkData", sha256 FROM instances WHERE sop_uid = ?', [sop]);
  return row!;
}

/** Zeroes every byte of the stored object but those of the ranges kept: any read that parses the file now fails. */
async function keepOnly(key: string, ranges: Array<[number, number]>): Promise<void> {
  const stored = await readObject(server, key);
  const ruined = Buffer.alloc(stored.length);
  for (const [offset, length] of ranges) stored.copy(ruined, offset, offset, offset + length);
  await writeObject(server, key, ruined);
}

describe('bulk data by recorded byte ranges', () => {
  it('answers a large private value and an overlay with their exact bytes at the BulkDataURIs of the metadata', async () => {
    const response = await adminFetch(`${base(plainUID)}/metadata`, { headers: { Accept: 'application/dicom+json' } });
    const [json] = (await response.json()) as Array<Record<string, { BulkDataURI?: string }>>;
    for (const [tag, value] of [['00091001', privateValue], ['60003000', overlay]] as const) {
      const uri = json![tag]!.BulkDataURI!;
      expect(uri).toMatch(new RegExp(`/bulkdata/${tag}$`));
      const answer = await adminFetch(uri, { headers: { Accept: 'application/octet-stream' } });
      expect(answer.status).toBe(200);
      expect(Buffer.from(await answer.arrayBuffer()).equals(value)).toBe(true);
    }
  });

  it('reads only the recorded bytes: with the rest of the file zeroed, the values come back the same', async () => {
    const row = await rowOf(plainUID);
    const ranges = JSON.parse(row.bulkData!) as Record<string, [number, number]>;
    expect(Object.keys(ranges).sort()).toEqual(['00091001', '60003000']);
    await keepOnly(row.objectKey, Object.values(ranges));
    expect((await bulkData(plainUID, '00091001')).equals(privateValue)).toBe(true);
    expect((await bulkData(plainUID, '60003000')).equals(overlay)).toBe(true);
    // Not found in the file: the path is not among those recorded.
    const missing = await adminFetch(`${base(plainUID)}/bulkdata/00091002`, { headers: { Accept: 'application/octet-stream' } });
    expect(missing.status).toBe(404);
  });

  it('finds the ranges of an instance indexed before they were recorded at its first read, and records them', async () => {
    await changeIndexRows(server, 'UPDATE instances SET bulk_data = NULL WHERE sop_uid = ?', [legacyUID]);
    expect((await rowOf(legacyUID)).bulkData).toBeNull();
    expect((await bulkData(legacyUID, '60003000')).equals(overlay)).toBe(true);
    const row = await rowOf(legacyUID);
    expect(row.bulkData).not.toBeNull();
    const ranges = JSON.parse(row.bulkData!) as Record<string, [number, number]>;
    // The second read takes the recorded range: the file around it may go.
    await keepOnly(row.objectKey, Object.values(ranges));
    expect((await bulkData(legacyUID, '00091001')).equals(privateValue)).toBe(true);
  });
});

describe('deflated instances', () => {
  const inflatedCopies = async () => (await objectKeys(server, 'derived/')).filter((k) => k.includes(`/instances/${deflatedUID}/`) && k.endsWith('-inflated.dcm'));

  it('answers every frame as its undeflated twin does, and keeps an inflated copy after the first request', async () => {
    expect(await inflatedCopies()).toEqual([]);
    const twin = await frames(twinUID);
    expect(twin).toHaveLength(FRAMES);
    expect(new Set(twin.map((f) => f.toString('base64'))).size).toBe(FRAMES);
    const deflated = await frames(deflatedUID);
    expect(deflated).toHaveLength(FRAMES);
    deflated.forEach((frame, i) => expect(frame.equals(twin[i]!), `frame ${i + 1}`).toBe(true));
    const [copy] = await inflatedCopies();
    expect(copy).toContain((await rowOf(deflatedUID)).sha256.slice(0, 16));
  });

  it('reads frames and bulk data from the inflated copy: with the deflated file zeroed, the answers are the same', async () => {
    const twin = await frames(twinUID);
    const row = await rowOf(deflatedUID);
    await keepOnly(row.objectKey, []);
    const again = await frames(deflatedUID);
    again.forEach((frame, i) => expect(frame.equals(twin[i]!), `frame ${i + 1}`).toBe(true));
    expect((await bulkData(deflatedUID, '00091001')).equals(privateValue)).toBe(true);
  });

  it('removes the inflated copy with its instance', async () => {
    expect(await inflatedCopies()).toHaveLength(1);
    const response = await adminFetch(`${base(deflatedUID)}?reason=test+deletion`, { method: 'DELETE' });
    expect(response.status).toBe(200);
    expect(await inflatedCopies()).toEqual([]);
  });
});

describe('a deflated instance larger than the derived cache', () => {
  let small: RunningServer;
  beforeAll(async () => {
    // The inflated data set (about 3.3 MB) is larger than the whole cache.
    small = await startServer({ env: { PACS_VERIFY_INTERVAL: 'off', PACS_DERIVED_CACHE_BYTES: String(1024 * 1024) } });
    const response = await stow(small.dicomweb, [instance(twinUID), deflate(instance(deflatedUID))]);
    expect(response.status, await response.clone().text()).toBe(200);
  }, 120_000);
  afterAll(async () => {
    await small?.stop();
  });

  it('is inflated as it streams, every time, and leaves no copy behind', async () => {
    const twin = await frames(twinUID, small);
    for (let call = 0; call < 2; call++) {
      const deflated = await frames(deflatedUID, small);
      deflated.forEach((frame, i) => expect(frame.equals(twin[i]!), `frame ${i + 1}`).toBe(true));
    }
    expect((await bulkData(deflatedUID, '00091001', small)).equals(privateValue)).toBe(true);
    expect(await objectKeys(small, 'derived/')).toEqual([]);
  });
});
