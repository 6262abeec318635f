import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { SopClass, syntheticInstance, type SyntheticOptions } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

type Fixture = {
  path: string;
  transferSyntaxUID: string;
  studyUID: string;
  seriesUID: string;
  sopInstanceUID: string;
  sopClassUID: string;
  modality: string;
  numberOfFrames: number;
  rows: number;
  columns: number;
  patientNameUtf8: string;
  specificCharacterSet?: string;
  sha256: string;
};

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** Files made by dcmtk/gdcm (test/fixtures/make-fixtures.sh) and by our own generator, side by side. */
const realTool: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const generated = generatedFixtures();
const manifest: Fixture[] = [...realTool, ...generated.map((g) => g.fixture)];
const bytesOf = (f: Fixture) => generated.find((g) => g.fixture === f)?.bytes ?? readFileSync(path.join(FIXTURES, f.path));

function generatedFixtures(): Array<{ fixture: Fixture; bytes: Buffer }> {
  const out: Array<{ fixture: Fixture; bytes: Buffer }> = [];
  const add = (name: string, o: SyntheticOptions, patientNameUtf8: string, specificCharacterSet?: string) => {
    const studyUID = o.studyUID ?? newUid();
    const seriesUID = o.seriesUID ?? newUid();
    const sopInstanceUID = newUid();
    const bytes = syntheticInstance({ ...o, studyUID, seriesUID, sopInstanceUID });
    const fixture: Fixture = {
      path: `generated:${name}`, transferSyntaxUID: o.transferSyntaxUID ?? '1.2.840.10008.1.2.1', studyUID, seriesUID, sopInstanceUID,
      sopClassUID: SopClass[o.modality ?? 'CT'], modality: o.modality ?? 'CT', numberOfFrames: o.frames ?? 1, rows: o.rows ?? 64,
      columns: o.columns ?? 64, patientNameUtf8, specificCharacterSet, sha256: sha256(bytes),
    };
    out.push({ fixture, bytes });
  };
  const ct = { studyUID: newUid(), seriesUID: newUid() };
  for (let i = 1; i <= 3; i++) add(`ct-${i}`, { ...ct, instanceNumber: i, patientName: 'Doe^Jane' }, 'Doe^Jane');
  add('implicit', { transferSyntaxUID: '1.2.840.10008.1.2', modality: 'MR', patientName: 'Implicit^Ivan' }, 'Implicit^Ivan');
  add('big-endian', { transferSyntaxUID: '1.2.840.10008.1.2.2', modality: 'CR', patientName: 'Big^Ben' }, 'Big^Ben');
  add('multiframe', { frames: 40, modality: 'US', rows: 32, columns: 48, patientName: 'Frames^Forty' }, 'Frames^Forty');
  const charset = (term: string, name: Buffer) => [
    { tag: '00080005', vr: 'CS', value: term },
    { tag: '00100010', vr: 'PN', value: name },
  ];
  add('latin1', { modality: 'MR', extra: charset('ISO_IR 100', Buffer.from('Müller^Jürgen', 'latin1')) }, 'Müller^Jürgen', 'ISO_IR 100');
  add('greek', { modality: 'CR', extra: charset('ISO_IR 126', Buffer.from([0xc4, 0xe9, 0xef, 0xed, 0xf5, 0xf3, 0xe9, 0xef, 0xf2])) }, 'Διονυσιος', 'ISO_IR 126');
  const esc = (b: number[]) => [0x1b, 0x24, 0x42, ...b, 0x1b, 0x28, 0x42];
  const japanese = Buffer.from([
    ...Buffer.from('Yamada^Tarou='), ...esc([0x3b, 0x33, 0x45, 0x44]), 0x5e, ...esc([0x42, 0x40, 0x4f, 0x3a]), 0x3d,
    ...esc([0x24, 0x64, 0x24, 0x5e, 0x24, 0x40]), 0x5e, ...esc([0x24, 0x3f, 0x24, 0x6d, 0x24, 0x26]),
  ]);
  add('japanese', { modality: 'MR', extra: charset('\\ISO 2022 IR 87', japanese) }, 'Yamada^Tarou=山田^太郎=やまだ^たろう', '\\ISO 2022 IR 87');
  return out;
}

/** Start marker of each compressed frame: SOI for the JPEG family (PS3.5 A.4.1-A.4.3), SOC for JPEG 2000; both end with FFD9. */
function codestreamStart(transferSyntaxUID: string): number | undefined {
  if (/^1\.2\.840\.10008\.1\.2\.4\.(50|51|57|70|80|81)$/.test(transferSyntaxUID)) return 0xffd8;
  if (/^1\.2\.840\.10008\.1\.2\.4\.9[01]$/.test(transferSyntaxUID)) return 0xff4f;
  return undefined;
}

const FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';

let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ env: { PACS_CORS_ORIGINS: 'http://viewer.example' } });
  const response = await stow(server.dicomweb, manifest.map(bytesOf));
  const body = await response.json();
  expect(response.status, JSON.stringify(body)).toBe(200);
});
afterAll(async () => {
  await server?.stop();
});

describe('STOW-RS', () => {
  it('acknowledges a re-sent instance with the same bytes without storing it twice', async () => {
    const fixture = manifest[0]!;
    const response = await stow(server.dicomweb, [bytesOf(fixture)]);
    expect(response.status).toBe(200);
    const body = await response.json();
    expect(body['00081199'].Value[0]['00081155'].Value).toEqual([fixture.sopInstanceUID]);
    const search = await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${fixture.sopInstanceUID}`);
    expect(await search.json()).toHaveLength(1);
  });

  it('refuses the same SOP Instance UID with other bytes, and keeps the first', async () => {
    const fixture = manifest.find((f) => f.numberOfFrames === 1 && f.transferSyntaxUID === '1.2.840.10008.1.2.1')!;
    const changed = Buffer.from(bytesOf(fixture));
    changed[changed.length - 1] ^= 0xff; // last pixel byte
    const response = await stow(server.dicomweb, [changed]);
    expect(response.status).toBe(409);
    const failed = (await response.json())['00081198'].Value[0];
    expect(failed['00081197'].Value).toEqual([0x0111]);
    expect(failed['00000902'].Value[0]).toMatch(/already stored with different content/);
    const retrieved = await adminFetch(`${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}`, {
      headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    const [part] = await readMultipartResponse(retrieved);
    expect(sha256(part!.body)).toBe(fixture.sha256);
  });

  it('refuses an instance of another study than the URL names, and stores its neighbours', async () => {
    const [a, b] = [manifest[0]!, manifest.find((f) => f.studyUID !== manifest[0]!.studyUID)!];
    const response = await stow(server.dicomweb, [bytesOf(a), bytesOf(b)], a.studyUID);
    expect(response.status).toBe(202);
    const body = await response.json();
    expect(body['00081198'].Value[0]['00081155'].Value).toEqual([b.sopInstanceUID]);
    expect(body['00081198'].Value[0]['00081197'].Value).toEqual([0xa900]);
    expect(body['00081199'].Value).toHaveLength(1);
  });

  it('answers 415 to a body that is not multipart/related', async () => {
    const response = await adminFetch(`${server.dicomweb}/studies`, { method: 'POST', headers: { 'Content-Type': 'application/dicom' }, body: new Uint8Array(bytesOf(manifest[0]!)) });
    expect(response.status).toBe(415);
    expect((await response.json()).error).toBe('unsupported-media-type');
  });
});

describe('STOW-RS duplicates, on a server that allows overwriting', () => {
  let other: RunningServer;
  beforeAll(async () => {
    other = await startServer({ env: { PACS_OVERWRITE_DIFFERENT: 'true' } });
  });
  afterAll(async () => {
    await other?.stop();
  });
  const retrieve = (dicomweb: string, f: { studyUID: string; seriesUID: string; sopInstanceUID: string }) =>
    adminFetch(`${dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });

  it('stores an instance sent twice in one request once', async () => {
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const file = syntheticInstance(ids);
    const response = await stow(other.dicomweb, [file, file]);
    expect(response.status).toBe(200);
    const [study] = await (await adminFetch(`${other.dicomweb}/studies?StudyInstanceUID=${ids.studyUID}`)).json();
    expect(study['00201208'].Value).toEqual([1]);
  });

  it('replaces an instance re-sent with other bytes, corrected names included', async () => {
    const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
    const first = syntheticInstance({ ...ids, patientName: 'First^Version' });
    const second = syntheticInstance({ ...ids, patientName: 'Second^Version' });
    expect((await stow(other.dicomweb, [first])).status).toBe(200);
    expect((await stow(other.dicomweb, [second])).status).toBe(200);
    const [part] = await readMultipartResponse(await retrieve(other.dicomweb, ids));
    expect(sha256(part!.body)).toBe(sha256(second));
    const [study] = await (await adminFetch(`${other.dicomweb}/studies?StudyInstanceUID=${ids.studyUID}`)).json();
    expect(study['00201208'].Value).toEqual([1]);
    expect(study['00100010'].Value).toEqual([{ Alphabetic: 'Second^Version' }]);
  });

});

describe('WADO-RS', () => {
  it('returns every instance byte for byte as stored', async () => {
    for (const fixture of manifest) {
      const response = await adminFetch(`${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}`, {
        headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      });
      expect(response.status, fixture.path).toBe(200);
      const [part] = await readMultipartResponse(response);
      expect(sha256(part!.body), fixture.path).toBe(fixture.sha256);
    }
  });

  it('returns a whole study as one multipart response', async () => {
    const study = manifest[0]!.studyUID;
    const expected = manifest.filter((f) => f.studyUID === study).map((f) => f.sha256).sort();
    const response = await adminFetch(`${server.dicomweb}/studies/${study}`, { headers: { Accept: 'multipart/related; type=application/dicom' } });
    const parts = await readMultipartResponse(response);
    expect(parts.map((p) => sha256(p.body)).sort()).toEqual(expected);
  });

  it('serves metadata with NumberOfFrames where the file has it, the frame syntax and absolute BulkDataURIs', async () => {
    for (const fixture of manifest) {
      const response = await adminFetch(`${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}/metadata`);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^application\/dicom\+json/);
      const [json] = await response.json();
      expect((json['00280008']?.Value ?? [1]).map(Number)).toEqual([fixture.numberOfFrames]);
      expect(json['00080018'].Value).toEqual([fixture.sopInstanceUID]);
      expect(json['00083002'].Value[0]).toMatch(/^1\.2\.840\.10008\.1\.2/);
      expect(json['7FE00010'].BulkDataURI).toBe(`${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}/bulkdata/7FE00010`);
      expect(json['00020010']).toBeUndefined();
    }
  });

  it('serves as metadata the attributes dcmdump reads in each file, and no others', async () => {
    for (const fixture of realTool) {
      const dump = execFileSync('dcmdump', ['-q', path.join(FIXTURES, fixture.path)], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
      // Top-level attributes only; the meta information and the pixel sequence's delimiter are not attributes of the data set.
      const dumped = [...dump.matchAll(/^\(([0-9a-f]{4}),([0-9a-f]{4})\)/gm)].map(([, group, element]) => `${group}${element}`.toUpperCase());
      const expected = new Set(dumped.filter((tag) => !tag.startsWith('0002') && !tag.startsWith('FFFE')));
      // What ingest adds for viewers: the syntax frames are served in (PS3.18 AvailableTransferSyntaxUID).
      expected.add('00083002');
      const response = await adminFetch(`${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}/metadata`);
      const [json] = await response.json();
      expect(Object.keys(json).sort(), fixture.path).toEqual([...expected].sort());
    }
  });

  it('answers series metadata gzipped with an ETag, and 304 when it has not changed', async () => {
    const f = manifest[0]!;
    const url = `${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/metadata`;
    const first = await adminFetch(url, { headers: { 'Accept-Encoding': 'gzip' } });
    expect(first.status).toBe(200);
    expect(first.headers.get('content-encoding')).toBe('gzip');
    const etag = first.headers.get('etag')!;
    expect(etag).toBeTruthy();
    expect((await first.json()).length).toBe(manifest.filter((m) => m.seriesUID === f.seriesUID).length);
    const again = await adminFetch(url, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
  });

  it('serves every frame in its stored syntax, one part per frame', async () => {
    for (const fixture of manifest) {
      const frames = Array.from({ length: Math.min(fixture.numberOfFrames, 3) }, (_, i) => fixture.numberOfFrames - i);
      const response = await adminFetch(
        `${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}/frames/${frames.join(',')}`,
        { headers: { Accept: FRAME_ACCEPT } },
      );
      expect(response.status, fixture.path).toBe(200);
      const parts = await readMultipartResponse(response);
      expect(parts).toHaveLength(frames.length);
      const native = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99'].includes(fixture.transferSyntaxUID);
      for (const part of parts) {
        expect(part.headers['content-type'], fixture.path).toContain(`transfer-syntax=${native ? '1.2.840.10008.1.2.1' : fixture.transferSyntaxUID}`);
        if (native) expect(part.body.length % (fixture.rows * fixture.columns)).toBe(0);
        const start = codestreamStart(fixture.transferSyntaxUID);
        if (start) {
          // A whole frame, however many fragments it was stored in: its codestream's first and last markers.
          expect(part.body.readUInt16BE(0), `${fixture.path} frame starts its codestream`).toBe(start);
          const end = part.body.at(-1) === 0 ? part.body.length - 3 : part.body.length - 2; // fragments are padded to even length
          expect(part.body.readUInt16BE(end), `${fixture.path} frame ends its codestream`).toBe(0xffd9);
        }
      }
      if (parts.length > 1) expect(parts[0]!.body.equals(parts[1]!.body), `${fixture.path}: frames differ`).toBe(false);
    }
  });

  it('answers 404 with a reason for a frame that does not exist', async () => {
    const f = manifest[0]!;
    const response = await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}/frames/${f.numberOfFrames + 1}`, {
      headers: { Accept: FRAME_ACCEPT },
    });
    expect(response.status).toBe(404);
    expect((await response.json()).detail).toMatch(/has \d+ frame/);
  });
});

describe('QIDO-RS', () => {
  const studies = [...new Set(manifest.map((f) => f.studyUID))];

  it('lists every study with its counts and modalities', async () => {
    const response = await adminFetch(`${server.dicomweb}/studies?limit=1000`, { headers: { Accept: 'application/dicom+json' } });
    const body = await response.json();
    expect(body.map((s: any) => s['0020000D'].Value[0]).sort()).toEqual([...studies].sort());
    for (const study of body) {
      const uid = study['0020000D'].Value[0];
      const files = manifest.filter((f) => f.studyUID === uid);
      expect(study['00201208'].Value).toEqual([files.length]);
      expect(study['00201206'].Value).toEqual([new Set(files.map((f) => f.seriesUID)).size]);
      expect(study['00080061'].Value.sort()).toEqual([...new Set(files.map((f) => f.modality))].sort());
      expect(study['00081190'].Value[0]).toBe(`${server.dicomweb}/studies/${uid}`);
    }
  });

  it('finds each patient by name in its own character set, case-insensitively, and answers UTF-8', async () => {
    for (const fixture of manifest.filter((f) => f.specificCharacterSet)) {
      const alphabetic = fixture.patientNameUtf8.split('=')[0]!;
      for (const query of [alphabetic, alphabetic.toUpperCase(), `${alphabetic.slice(0, 3).toLowerCase()}*`]) {
        const response = await adminFetch(`${server.dicomweb}/studies?PatientName=${encodeURIComponent(query)}`);
        const body = await response.json();
        const hit = body.find((s: any) => s['0020000D'].Value[0] === fixture.studyUID);
        expect(hit, `${fixture.path}: ${query}`).toBeDefined();
        const name = hit['00100010'].Value[0];
        expect([name.Alphabetic, name.Ideographic, name.Phonetic].filter(Boolean).join('=')).toBe(fixture.patientNameUtf8);
      }
      const groups = fixture.patientNameUtf8.split('=');
      if (groups[1]) {
        const response = await adminFetch(`${server.dicomweb}/studies?PatientName=${encodeURIComponent(groups[1])}`);
        expect((await response.json()).some((s: any) => s['0020000D'].Value[0] === fixture.studyUID), `${fixture.path}: ideographic`).toBe(true);
      }
    }
  });

  it('matches UID lists, modalities and open date ranges', async () => {
    const two = studies.slice(0, 2);
    const byUid = await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${two.join('\\')}`)).json();
    expect(byUid.map((s: any) => s['0020000D'].Value[0]).sort()).toEqual([...two].sort());
    const modality = manifest[0]!.modality;
    const byModality = await (await adminFetch(`${server.dicomweb}/studies?ModalitiesInStudy=${modality}`)).json();
    expect(byModality.length).toBe(new Set(manifest.filter((f) => f.modality === modality).map((f) => f.studyUID)).size);
    const all = await (await adminFetch(`${server.dicomweb}/studies?StudyDate=19000101-`)).json();
    const none = await (await adminFetch(`${server.dicomweb}/studies?StudyDate=-18991231`)).json();
    expect(all.length + none.length).toBeGreaterThan(0);
    expect(none).toHaveLength(0);
  });

  it('pages with limit and offset in a stable order', async () => {
    const whole = await (await adminFetch(`${server.dicomweb}/studies`)).json();
    const first = await (await adminFetch(`${server.dicomweb}/studies?limit=2&offset=0`)).json();
    const second = await (await adminFetch(`${server.dicomweb}/studies?limit=2&offset=2`)).json();
    expect([...first, ...second].map((s: any) => s['0020000D'].Value[0])).toEqual(whole.slice(0, 4).map((s: any) => s['0020000D'].Value[0]));
  });

  it('lists series and instances with their counts and includefield', async () => {
    const f = manifest.find((m) => m.numberOfFrames > 1)!;
    const series = await (await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/series?includefield=all`)).json();
    expect(series.find((s: any) => s['0020000E'].Value[0] === f.seriesUID)['00201209'].Value).toEqual([
      manifest.filter((m) => m.seriesUID === f.seriesUID).length,
    ]);
    const instances = await (await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances?includefield=00280004`)).json();
    const hit = instances.find((i: any) => i['00080018'].Value[0] === f.sopInstanceUID);
    expect(hit['00280008'].Value.map(Number)).toEqual([f.numberOfFrames]);
    expect(hit['00280004'].Value).toBeDefined();
    expect(hit['00081190'].Value[0]).toContain(`/instances/${f.sopInstanceUID}`);
  });

  it('answers 400 with the reason for an unknown key or a malformed value', async () => {
    for (const [query, reason] of [
      ['NotAKeyword=1', /neither a DICOM keyword/],
      ['StudyDate=2020-01-01', /YYYYMMDD/],
      ['StudyInstanceUID=1.2.abc', /not a valid UID/],
      ['limit=ten', /whole number/],
      ['SOPInstanceUID=1.2.3', /cannot be used as a matching key at study level/],
    ] as const) {
      const response = await adminFetch(`${server.dicomweb}/studies?${query}`);
      expect(response.status, query).toBe(400);
      expect((await response.json()).detail, query).toMatch(reason);
    }
  });
});

describe('HTTP', () => {
  it('carries CORS headers on errors and answers preflight', async () => {
    const error = await adminFetch(`${server.dicomweb}/studies/1.2.3/metadata`, { headers: { Origin: 'http://viewer.example' } });
    expect(error.status).toBe(404);
    expect(error.headers.get('access-control-allow-origin')).toBe('http://viewer.example');
    const preflight = await adminFetch(`${server.dicomweb}/studies`, {
      method: 'OPTIONS',
      headers: { Origin: 'http://viewer.example', 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': 'authorization' },
    });
    expect(preflight.status).toBeLessThan(300);
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase()).toContain('authorization');
  });

  it('reports health of the index and the object store', async () => {
    const response = await adminFetch(`${server.url}/healthz`);
    const health = await response.json();
    expect(health).toMatchObject({ status: 'ok', index: 'ok', objectStore: 'ok', disk: { status: 'ok', minFreeBytes: 512 * 1024 ** 2 } });
    expect(health.disk.freeBytes).toBeGreaterThan(0);
  });
});
