import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { openApp, type InProcessApp } from '../helpers/app.js';
import { readMultipartResponse, stowBody } from '../helpers/server.js';

/**
 * The DICOMweb routes through app.request(), in this process over a real SQLite index and filesystem store: what
 * each Accept and Content-Type gets (several types, q-values, transfer-syntax), the status each outcome maps to, and
 * the {error, detail} body of every refusal. Durability, replicas and migration stay with spawned servers.
 */

const KB = 1024;
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const EXPLICIT_LE = TransferSyntax.ExplicitVRLittleEndian;
const DICOM_PARTS = 'multipart/related; type="application/dicom"';
const FRAME_PARTS = 'multipart/related; type="application/octet-stream"';
const FailureReason = { OutOfResources: 0xa700, CannotUnderstand: 0xc000 };

let pacs: InProcessApp;
const studyUID = newUid();
const seriesUID = newUid();
const cine: { uid: string; bytes: Buffer } = { uid: newUid(), bytes: Buffer.alloc(0) };
const instancePath = () => `/dicom-web/studies/${studyUID}/series/${seriesUID}/instances/${cine.uid}`;

beforeAll(async () => {
  pacs = await openApp({ PACS_MAX_INSTANCE_BYTES: '64KB', PACS_MAX_REQUEST_BYTES: '1MB' });
  cine.bytes = syntheticInstance({ studyUID, seriesUID, sopInstanceUID: cine.uid, rows: 16, columns: 16, frames: 2 });
  const response = await stow([cine.bytes]);
  expect(response.status).toBe(200);
});
afterAll(async () => {
  await pacs?.close();
});

function stow(parts: Parameters<typeof stowBody>[0], init: { path?: string; headers?: Record<string, string>; contentType?: string } = {}): Promise<Response> {
  const { body, contentType } = stowBody(parts);
  return pacs.request(init.path ?? '/dicom-web/studies', {
    method: 'POST',
    headers: { 'Content-Type': init.contentType ?? contentType, ...init.headers },
    body: new Uint8Array(body),
  });
}

const get = (path: string, accept?: string, headers: Record<string, string> = {}) => pacs.request(path, { headers: { ...(accept === undefined ? {} : { Accept: accept }), ...headers } });

/** A refusal: its status, and a JSON body of exactly a short code and a sentence for a person, never a stack. */
async function expectError(response: Response, status: number, error: string, detail?: RegExp): Promise<string> {
  expect(response.status).toBe(status);
  expect(response.headers.get('content-type')).toMatch(/^application\/json/);
  const body = await response.json();
  expect(Object.keys(body).sort()).toEqual(['detail', 'error']);
  expect(body.error).toBe(error);
  expect(body.detail).toEqual(expect.any(String));
  if (detail) expect(body.detail).toMatch(detail);
  expect(body.detail).not.toMatch(/\bat .*\.(ts|js):\d+/);
  return body.detail;
}

/** The UIDs a STOW answer lists as stored and as failed (with their FailureReason). */
async function stowOutcome(response: Response) {
  const body = await response.json();
  return {
    stored: (body['00081199']?.Value ?? []).map((i: any) => i['00081155'].Value[0]),
    failed: (body['00081198']?.Value ?? []).map((i: any) => ({ uid: i['00081155']?.Value[0], reason: i['00081197'].Value[0] })),
  };
}

describe('WADO-RS retrieve sends an Explicit VR Little Endian instance as stored, whatever acceptable way it is asked', () => {
  const acceptable = [
    undefined,
    '*/*',
    DICOM_PARTS,
    'Multipart/Related;TYPE=Application/DICOM',
    `${DICOM_PARTS}; transfer-syntax=*`,
    `multipart/related; transfer-syntax="${EXPLICIT_LE}"; type=application/dicom`,
    // A named syntax it does not have is passed over for a less wanted entry it can meet.
    `${DICOM_PARTS}; transfer-syntax=${JPEG_BASELINE}, ${DICOM_PARTS}; transfer-syntax=*; q=0.5`,
    `application/dicom+json, ${DICOM_PARTS}; q=0.2`,
  ];
  for (const accept of acceptable) {
    it(`answers ${accept ?? 'no Accept'} with the stored bytes`, async () => {
      const response = await get(instancePath(), accept);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^multipart\/related; type="application\/dicom"; boundary=/);
      const parts = await readMultipartResponse(response);
      expect(parts.map((p) => p.headers['content-type'])).toEqual([`application/dicom; transfer-syntax=${EXPLICIT_LE}`]);
      expect(parts[0]!.body.equals(cine.bytes)).toBe(true);
    });
  }

  it('answers 406 naming what it sends when only other syntaxes or types are acceptable', async () => {
    await expectError(await get(instancePath(), `${DICOM_PARTS}; transfer-syntax=${JPEG_BASELINE}`), 406, 'not-acceptable', new RegExp(`sent as stored \\(${EXPLICIT_LE}\\) or as Explicit VR Little Endian.*transfer-syntax=\\*`));
    await expectError(await get(instancePath(), 'application/dicom+json, image/jpeg'), 406, 'not-acceptable', /multipart\/related; type="application\/dicom"/);
  });

  it('answers 404 for a UID nothing is stored under, and 400 for one that is no UID', async () => {
    await expectError(await get(`/dicom-web/studies/${studyUID}/series/${seriesUID}/instances/${newUid()}`, DICOM_PARTS), 404, 'not-found', /no instance with that UID/);
    await expectError(await get(`/dicom-web/studies/${studyUID}/series/1.02.3`, DICOM_PARTS), 400, 'bad-request', /SeriesInstanceUID in the URL/);
  });
});

describe('WADO-RS metadata negotiates its JSON type', () => {
  const cases: Array<[string | undefined, string]> = [
    [undefined, 'application/dicom+json'],
    ['application/json', 'application/json'],
    ['application/dicom+xml, application/json; q=0.4, application/dicom+json; q=0.8', 'application/dicom+json'],
    ['application/dicom+json; q=0, application/json', 'application/json'],
    ['application/dicom+xml, */*; q=0.1', 'application/dicom+json'],
  ];
  for (const [accept, type] of cases) {
    it(`answers ${accept ?? 'no Accept'} as ${type}`, async () => {
      const response = await get(`${instancePath()}/metadata`, accept);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(`${type}; charset=utf-8`);
      const [instance] = await response.json();
      expect(instance['00080018'].Value).toEqual([cine.uid]);
    });
  }

  it('answers 406 to XML outside multipart/related (PS3.18 sends XML metadata one part per instance)', async () => {
    await expectError(await get(`/dicom-web/studies/${studyUID}/metadata`, 'application/dicom+xml'), 406, 'not-acceptable', /application\/dicom\+json, or as multipart\/related; type="application\/dicom\+xml"/);
  });
});

describe('WADO-RS frames', () => {
  const frameBytes = 16 * 16 * 2;

  for (const accept of [`${FRAME_PARTS}; transfer-syntax=*`, FRAME_PARTS, `${FRAME_PARTS}; transfer-syntax=${EXPLICIT_LE}`, `image/jpeg, ${FRAME_PARTS}; q=0.5`, '*/*']) {
    it(`sends each frame as a part of its own for ${accept}`, async () => {
      const response = await get(`${instancePath()}/frames/2,1`, accept);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^multipart\/related; type="application\/octet-stream"; boundary=/);
      const parts = await readMultipartResponse(response);
      expect(parts.map((p) => [p.headers['content-type'], p.body.length])).toEqual([
        [`application/octet-stream; transfer-syntax=${EXPLICIT_LE}`, frameBytes],
        [`application/octet-stream; transfer-syntax=${EXPLICIT_LE}`, frameBytes],
      ]);
      expect(parts[0]!.body.equals(parts[1]!.body)).toBe(false);
    });
  }

  it('answers 406 to a compressed type or syntax it does not hold, 404 to a frame past the last, 400 to a list that is no list', async () => {
    await expectError(await get(`${instancePath()}/frames/1`, 'multipart/related; type="image/jpeg"'), 406, 'not-acceptable', /type="application\/octet-stream"; transfer-syntax=/);
    await expectError(await get(`${instancePath()}/frames/1`, `${FRAME_PARTS}; transfer-syntax=${JPEG_BASELINE}`), 406, 'not-acceptable');
    await expectError(await get(`${instancePath()}/frames/3`, FRAME_PARTS), 404, 'not-found', /frame 3 does not exist: the instance has 2 frame/);
    await expectError(await get(`${instancePath()}/frames/1;2`, FRAME_PARTS), 400, 'bad-request', /frame list must be numbers separated by commas/);
  });
});

describe('QIDO-RS', () => {
  for (const [accept, type] of [
    [undefined, 'application/dicom+json'],
    ['application/json', 'application/json'],
    ['application/dicom+xml; q=1, application/json; q=0.9, application/dicom+json; q=0.5', 'application/json'],
    ['*/*', 'application/dicom+json'],
  ] as const) {
    it(`answers ${accept ?? 'no Accept'} as ${type}`, async () => {
      const response = await get(`/dicom-web/studies?StudyInstanceUID=${studyUID}`, accept);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(`${type}; charset=utf-8`);
      expect((await response.json()).map((s: any) => s['0020000D'].Value[0])).toEqual([studyUID]);
    });
  }

  it('answers 406 to XML only, and 400 naming an unknown key or a malformed value', async () => {
    await expectError(await get('/dicom-web/studies', 'application/dicom+xml'), 406, 'not-acceptable', /application\/dicom\+json/);
    await expectError(await get('/dicom-web/studies?NotAKeyword=1'), 400, 'bad-request', /NotAKeyword/);
    await expectError(await get('/dicom-web/studies?limit=ten'), 400, 'bad-request', /limit must be a whole number/);
    await expectError(await get('/dicom-web/studies/1.02/series'), 400, 'bad-request', /StudyInstanceUID/);
  });
});

describe('STOW-RS', () => {
  const instance = () => {
    const uid = newUid();
    return { uid, bytes: syntheticInstance({ sopInstanceUID: uid, rows: 16, columns: 16 }) };
  };

  it('reads the multipart/related Content-Type leniently and answers application/dicom+json', async () => {
    for (const contentType of [
      (b: string) => `multipart/related; type="application/dicom"; boundary=${b}`,
      (b: string) => `Multipart/Related;Boundary="${b}";Type=application/dicom`,
      (b: string) => `multipart/related; boundary=${b}`,
    ]) {
      const a = instance();
      const { body } = stowBody([a.bytes], 'the-boundary');
      const response = await pacs.request('/dicom-web/studies', { method: 'POST', headers: { 'Content-Type': contentType('the-boundary') }, body: new Uint8Array(body) });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('application/dicom+json');
      expect((await stowOutcome(response)).stored).toEqual([a.uid]);
    }
  });

  it('maps its outcome to 200 (all stored), 202 (some) and 409 (none), each failure with its reason', async () => {
    const [a, b] = [instance(), instance()];
    const tooLargeUid = newUid();
    const tooLarge = { uid: tooLargeUid, bytes: syntheticInstance({ sopInstanceUID: tooLargeUid, rows: 256, columns: 256 }) }; // 128 KB of pixels
    expect(tooLarge.bytes.length).toBeGreaterThan(64 * KB);

    const all = await stow([a.bytes]);
    expect(all.status).toBe(200);
    const some = await stow([b.bytes, tooLarge.bytes, Buffer.from('not DICOM at all')]);
    expect(some.status).toBe(202);
    expect(await stowOutcome(some)).toEqual({
      stored: [b.uid],
      failed: [
        { uid: tooLarge.uid, reason: FailureReason.OutOfResources },
        { uid: undefined, reason: FailureReason.CannotUnderstand },
      ],
    });
    const none = await stow([{ contentType: 'image/png', body: Buffer.from('png') }]);
    expect(none.status).toBe(409);
    expect(await stowOutcome(none)).toEqual({ stored: [], failed: [{ uid: undefined, reason: FailureReason.CannotUnderstand }] });
  });

  it('answers 415 to a body that is not multipart/related of application/dicom, and stores nothing', async () => {
    const a = instance();
    await expectError(await stow([a.bytes], { contentType: 'application/dicom' }), 415, 'unsupported-media-type', /multipart\/related; type="application\/dicom"; boundary=/);
    await expectError(await stow([a.bytes], { contentType: 'multipart/related; type="application/dicom"' }), 415, 'unsupported-media-type', /no boundary parameter/);
    await expectError(await stow([a.bytes], { contentType: 'multipart/related; type="application/dicom+json"; boundary=b' }), 415, 'unsupported-media-type', /application\/dicom\+json.*not supported/);
    expect((await (await get(`/dicom-web/instances?SOPInstanceUID=${a.uid}`)).json())).toEqual([]);
  });

  it('answers 400 to broken framing or no parts, and 400 to a study UID that is no UID', async () => {
    const a = instance();
    const { body, contentType } = stowBody([a.bytes]);
    const cut = await pacs.request('/dicom-web/studies', { method: 'POST', headers: { 'Content-Type': contentType }, body: new Uint8Array(body.subarray(0, body.length - 20)) });
    await expectError(cut, 400, 'bad-multipart', /nothing was stored/);
    await expectError(await stow([]), 400, 'bad-request', /holds no parts/);
    await expectError(await stow([a.bytes], { path: '/dicom-web/studies/1.2.3.' }), 400, 'bad-request', /StudyInstanceUID in the URL/);
  });

  it('answers 413 to a declared Content-Length over PACS_MAX_REQUEST_BYTES', async () => {
    const { body, contentType } = stowBody([instance().bytes]);
    const response = await pacs.request('/dicom-web/studies', { method: 'POST', headers: { 'Content-Type': contentType, 'Content-Length': String(2 * 1024 * KB) }, body: new Uint8Array(body) });
    await expectError(response, 413, 'too-large', /larger than the 1 MiB limit \(PACS_MAX_REQUEST_BYTES\)/);
  });
});

describe('every refusal is {error, detail} JSON, with CORS headers', () => {
  it('answers 401 without a credential, with a Bearer challenge', async () => {
    const response = await pacs.app.request('/dicom-web/studies');
    await expectError(response, 401, 'unauthorized');
    expect(response.headers.get('www-authenticate')).toMatch(/^Bearer realm=/);
  });

  it('answers 404 for no route, 400 for a path that is not percent-encoding, each to a browser origin', async () => {
    const origin = { Origin: 'https://viewer.clinic.example' };
    const none = await get('/dicom-web/no-such-thing', undefined, origin);
    await expectError(none, 404, 'not-found', /no route for GET \/dicom-web\/no-such-thing/);
    expect(none.headers.get('access-control-allow-origin')).toBe('*');
    const garbled = await get('/dicom-web/studies/%ZZ', undefined, origin);
    await expectError(garbled, 400, 'bad-request', /percent-encoding/);
    expect(garbled.headers.get('access-control-allow-origin')).toBe('*');
  });
});

describe('every route that names UIDs in its path checks them, the same way', () => {
  const NAMES = { study: 'StudyInstanceUID', series: 'SeriesInstanceUID', instance: 'SOPInstanceUID' } as const;
  type Level = keyof typeof NAMES;
  /** Method and path of each route, `{study}`, `{series}` and `{instance}` standing for the UIDs it names. */
  const routes: Array<[string, string]> = [
    ['GET', '/dicom-web/studies/{study}'],
    ['GET', '/dicom-web/studies/{study}/series/{series}'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}'],
    ['GET', '/dicom-web/studies/{study}/metadata'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/metadata'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}/metadata'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/1'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}/bulkdata/7FE00010'],
    ['GET', '/dicom-web/studies/{study}/rendered'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/thumbnail'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}/rendered'],
    ['GET', '/dicom-web/studies/{study}/series/{series}/instances/{instance}/frames/1/thumbnail'],
    ['DELETE', '/dicom-web/studies/{study}/series/{series}/instances/{instance}'],
    ['GET', '/api/v1/studies/{study}'],
    ['GET', '/api/v1/studies/{study}/viewer-url'],
  ];
  const known: Record<Level, string> = { study: studyUID, series: seriesUID, instance: '' };
  const pathOf = (template: string, uids: Record<Level, string>) => template.replace(/\{(study|series|instance)\}/g, (_, level: Level) => uids[level]);
  const levelsOf = (template: string) => (Object.keys(NAMES) as Level[]).filter((level) => template.includes(`{${level}}`));

  it('answers 400 naming the UID that is malformed, wherever it is in the path', async () => {
    known.instance = cine.uid;
    for (const [method, template] of [...routes, ['GET', '/dicom-web/studies/{study}/series/{series}/instances'], ['POST', '/dicom-web/studies/{study}']]) {
      for (const level of levelsOf(template)) {
        const path = pathOf(template, { ...known, [level]: '1.02.3' });
        const detail = await expectError(await pacs.request(path, { method }), 400, 'bad-request', new RegExp(`${NAMES[level]} in the URL "1\\.02\\.3" is not a valid DICOM UID`));
        expect(detail, `${method} ${path}`).toMatch(/no leading zeros/);
      }
    }
  });

  it('answers 404 for well-formed UIDs nothing is stored under, at the deepest level the path names', async () => {
    known.instance = cine.uid;
    for (const [method, template] of routes) {
      const deepest = levelsOf(template).at(-1)!;
      const path = pathOf(template, { ...known, [deepest]: newUid() });
      // A deletion says why, or it is refused before anything is looked up.
      const response = await pacs.request(method === 'DELETE' ? `${path}?reason=test+deletion` : path, { method });
      expect(response.status, `${method} ${path}`).toBe(404);
      await expectError(response, 404, 'not-found');
    }
  });
});
