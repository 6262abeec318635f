import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_NAME_WORDS, MAX_VALUES_PER_KEY } from '../../src/catalog/qido.js';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * Input that used to crash a request with a 500 (issue 10): paths whose percent-encoding does not decode, lists of
 * thousands of values and fuzzy names of thousands of words (the index refused the SQL). Each is a 400 that says
 * what to change, on both dialects; at the caps, the query still runs.
 */

const patient = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid(), patientName: 'Doe^Jane Mary', patientID: 'LIMITS-1', modality: 'MR' as const };

let server: RunningServer;
const get = (path: string) => adminFetch(`${server.url}${path}`, { headers: { Accept: 'application/dicom+json' } });
const studyUids = async (response: Response) => ((await response.json()) as Array<Record<string, { Value: string[] }>>).map((r) => r['0020000D']!.Value[0]);

async function expectRefused(path: string, reason: RegExp) {
  const response = await get(path);
  const body = await response.json();
  expect(response.status, `${path.slice(0, 120)}: ${JSON.stringify(body)}`).toBe(400);
  expect(body.error).toBe('bad-request');
  expect(body.detail).toMatch(reason);
}

beforeAll(async () => {
  server = await startServer();
  const response = await stow(server.dicomweb, [syntheticInstance({ ...patient, rows: 8, columns: 8 })]);
  expect(response.status, JSON.stringify(await response.json())).toBe(200);
});
afterAll(async () => {
  await server?.stop();
});

describe('paths with broken percent-encoding', () => {
  const instance = `/dicom-web/studies/${patient.studyUID}/series/${patient.seriesUID}/instances/${patient.sopInstanceUID}`;

  it('answers 400 for a bulk data path with an escape that is not two hex digits', async () => {
    await expectRefused(`${instance}/bulkdata/%ZZ`, /percent-encoding.*%25/);
  });

  it('answers 400 for a broken escape anywhere in a path, on every route', async () => {
    for (const path of [
      `${instance}/bulkdata/7FE00010%`,
      `${instance}/metadata%E0%A4%A`,
      `/dicom-web/studies/${patient.studyUID}%C3%28`,
      `/dicom-web/studies/%ZZ/series`,
      `/wado/%ZZ`,
      `/api/v1/studies/${patient.studyUID}%ZZ`,
      `/api/v1/%FF`,
    ]) {
      await expectRefused(path, /percent-encoding/);
    }
  });

  it('still decodes a well-formed escape', async () => {
    const response = await get(`${instance}/bulkdata/7FE0%30010`);
    expect(response.status).not.toBe(400);
    expect(response.status).toBeLessThan(500);
  });
});

describe('values per query key', () => {
  it('answers 400 for ModalitiesInStudy with 3,000 values', async () => {
    // Short values, as in the report: 3,000 of them fit the 16 KB request head.
    const modalities = Array(3000).fill('CT').join(',');
    await expectRefused(`/dicom-web/studies?ModalitiesInStudy=${modalities}`, new RegExp(`ModalitiesInStudy lists 3000 values; at most ${MAX_VALUES_PER_KEY}`));
  });

  it('answers 400 for a UID list of more values than the cap, given as one value or as repeated keys', async () => {
    const uids = Array.from({ length: MAX_VALUES_PER_KEY + 1 }, (_, i) => `1.2.${i}`);
    await expectRefused(`/dicom-web/studies?StudyInstanceUID=${uids.join(',')}`, /StudyInstanceUID lists \d+ values; at most/);
    await expectRefused(`/dicom-web/studies?${uids.map((u) => `StudyInstanceUID=${u}`).join('&')}`, /StudyInstanceUID lists \d+ values; at most/);
  });

  it('matches lists of exactly the cap on this dialect', async () => {
    const modalities = [...Array.from({ length: MAX_VALUES_PER_KEY - 1 }, (_, i) => `M${i}*`), patient.modality];
    const byModality = await get(`/dicom-web/studies?ModalitiesInStudy=${modalities.join(',')}`);
    expect(byModality.status).toBe(200);
    expect(await studyUids(byModality)).toEqual([patient.studyUID]);
    const uids = [...Array.from({ length: MAX_VALUES_PER_KEY - 1 }, (_, i) => `1.2.${i}`), patient.studyUID];
    const byUid = await get(`/dicom-web/studies?StudyInstanceUID=${uids.join(',')}`);
    expect(byUid.status).toBe(200);
    expect(await studyUids(byUid)).toEqual([patient.studyUID]);
  });
});

describe('words per fuzzy person name', () => {
  it('answers 400 for a fuzzy name of 1,500 words', async () => {
    const words = Array.from({ length: 1500 }, (_, i) => `w${i}`).join('%20');
    await expectRefused(`/dicom-web/studies?fuzzymatching=true&PatientName=${words}`, new RegExp(`PatientName has 1500 words; at most ${MAX_NAME_WORDS}`));
  });

  it('answers 400 for a name of more than three component groups', async () => {
    await expectRefused(`/dicom-web/studies?PatientName=${Array(3000).fill('x').join('=')}`, /PatientName has 3000 component groups; a person name has at most 3/);
  });

  it('matches a fuzzy name of exactly the cap on this dialect', async () => {
    const words = [...Array.from({ length: MAX_NAME_WORDS - 1 }, () => 'ja'), 'do'].join('%20');
    const response = await get(`/dicom-web/studies?fuzzymatching=true&PatientName=${words}`);
    expect(response.status).toBe(200);
    expect(await studyUids(response)).toEqual([patient.studyUID]);
  });
});
