import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/** What QIDO-RS shows only over HTTP: keys as sent, what each answer carries, paging signals, 400 reasons. */

type Json = Record<string, { vr: string; Value?: any[]; BulkDataURI?: string }>;

const mueller = { studyUID: newUid(), patientName: 'Müller^Jürgen', patientID: 'QIDO-1', studyDescription: 'Herz ÄRZTLICH' };
const ct = newUid();
const mr = newUid();
const doe = { studyUID: newUid(), patientName: 'Doe^Jane', patientID: 'QIDO-2', studyDate: '20230101', extra: [{ tag: '00080201', vr: 'SH', value: '+0100' }] };
/** A study whose only series has no Modality value. */
const unknown = { studyUID: newUid(), patientName: 'Roe^Rick', patientID: 'QIDO-3', studyDate: '20220101', extra: [{ tag: '00080060', vr: 'CS', value: '' }] };
const ctInstances = syntheticSeries(2, { ...mueller, seriesUID: ct, seriesNumber: 1 });

let server: RunningServer;
const get = (path: string) => adminFetch(`${server.dicomweb}${path}`, { headers: { Accept: 'application/dicom+json' } });
async function json(path: string): Promise<Json[]> {
  const response = await get(path);
  expect(response.status, `${path}: ${response.status}`).toBe(200);
  return response.json();
}
const uids = (results: Json[], tag = '0020000D') => results.map((r) => r[tag]!.Value![0]).sort();

beforeAll(async () => {
  server = await startServer();
  const files = [
    ...ctInstances,
    syntheticInstance({ ...mueller, seriesUID: mr, modality: 'MR', seriesNumber: 2 }),
    syntheticInstance({ ...doe, modality: 'CR' }),
    syntheticInstance(unknown),
  ];
  const response = await stow(server.dicomweb, files);
  expect(response.status, JSON.stringify(await response.json())).toBe(200);
});
afterAll(async () => {
  await server?.stop();
});

describe('query keys', () => {
  it('takes ModalitiesInStudy and PatientName by keyword or by tag', async () => {
    for (const key of ['ModalitiesInStudy', '00080061']) expect(uids(await json(`/studies?${key}=MR`)), key).toEqual([mueller.studyUID]);
    for (const key of ['PatientName', '00100010']) expect(uids(await json(`/studies?${key}=${encodeURIComponent('müller^jürgen')}`)), key).toEqual([mueller.studyUID]);
  });

  it('reads a repeated UID key as one list, and refuses any other repeated key', async () => {
    expect(uids(await json(`/studies?StudyInstanceUID=${mueller.studyUID}&StudyInstanceUID=${doe.studyUID}`))).toEqual([mueller.studyUID, doe.studyUID].sort());
    const response = await get(`/studies?PatientID=QIDO-1&PatientID=QIDO-2`);
    expect(response.status).toBe(400);
    expect((await response.json()).detail).toMatch(/PatientID is given 2 times; only UID list keys may repeat/);
  });

  it('answers 400 with the reason for a malformed control parameter or an unknown includefield', async () => {
    for (const [query, reason] of [
      ['fuzzymatching=yes', /fuzzymatching must be true or false/],
      ['limit=-1', /limit must be a whole number/],
      ['offset=1&offset=2', /offset is given 2 times/],
      ['includefield=NotAKeyword', /includefield "NotAKeyword" is neither a DICOM keyword/],
      ['InstitutionName=General', /InstitutionName cannot be used as a matching key at study level: this server does not match on it/],
    ] as const) {
      const response = await get(`/studies?${query}`);
      expect(response.status, query).toBe(400);
      expect((await response.json()).detail, query).toMatch(reason);
    }
  });

  it('returns the attribute of an empty key, as includefield would', async () => {
    const [instance] = await json(`/studies/${mueller.studyUID}/series/${mr}/instances?SliceThickness=`);
    expect(instance!['00180050']!.Value).toEqual([2.5]);
  });
});

describe('what each answer carries', () => {
  it("answers OHIF's study list query with its includefields and the study's counts", async () => {
    const query = `PatientName=${encodeURIComponent('*MÜLL*')}&limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060,00080090,00100030`;
    const [study, ...rest] = await json(`/studies?${query}`);
    expect(rest).toEqual([]);
    expect(study!['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen' }]);
    expect(study!['00081030']!.Value).toEqual(['Herz ÄRZTLICH']);
    expect(study!['00080061']!.Value).toEqual(['CT', 'MR']);
    expect(study!['00201206']!.Value).toEqual([2]);
    expect(study!['00201208']!.Value).toEqual([3]);
    expect(study!['00080060']).toBeUndefined(); // a series attribute, not answered for a study
  });

  it('leaves out ModalitiesInStudy when no series has a modality, as OHIF reads it', async () => {
    const [study] = await json(`/studies?StudyInstanceUID=${unknown.studyUID}`);
    expect(study!['00080061']).toBeUndefined();
    expect(study!['00201206']!.Value).toEqual([1]);
  });

  it('answers a search of all series with study attributes, a study’s series without', async () => {
    const all = await json(`/series?PatientID=QIDO-1`);
    expect(uids(all, '0020000E')).toEqual([ct, mr].sort());
    for (const series of all) {
      expect(series['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen' }]);
      expect(series['00201208']!.Value).toEqual([3]);
      expect(series['00081190']!.Value![0]).toMatch(/\/series\/[0-9.]+$/);
    }
    const [inStudy] = await json(`/studies/${mueller.studyUID}/series?SeriesInstanceUID=${ct}`);
    expect(inStudy!['00100010']).toBeUndefined();
    expect(inStudy!['00201209']!.Value).toEqual([2]);
    const [asked] = await json(`/studies/${mueller.studyUID}/series?SeriesInstanceUID=${ct}&includefield=PatientName,00280004`);
    expect(asked!['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen' }]);
    expect(asked!['00280004']).toBeUndefined(); // an instance attribute, not answered for a series
  });

  it('answers a search of all instances with study and series attributes, a study’s instances with series attributes', async () => {
    const all = await json(`/instances?PatientID=QIDO-1&Modality=CT`);
    expect(all).toHaveLength(2);
    for (const instance of all) {
      expect(instance['00100010']!.Value).toEqual([{ Alphabetic: 'Müller^Jürgen' }]);
      expect(instance['00200011']!.Value).toEqual([1]);
      expect(instance['00201209']!.Value).toEqual([2]);
    }
    const inStudy = await json(`/studies/${mueller.studyUID}/instances?SeriesInstanceUID=${mr}`);
    expect(inStudy[0]!['00200011']!.Value).toEqual([2]);
    expect(inStudy[0]!['00100010']).toBeUndefined();
  });

  it('answers the timezone offset, when known, at every level (PS3.18 Tables 10.6.3-3 to -5)', async () => {
    for (const path of [`/studies?PatientID=QIDO-2`, `/studies/${doe.studyUID}/series`, `/studies/${doe.studyUID}/instances`]) {
      const [result] = await json(path);
      expect(result!['00080201']?.Value, path).toEqual(['+0100']);
    }
  });

  it('answers includefield=all for instances with every attribute stored for the instance', async () => {
    const [instance] = await json(`/studies/${mueller.studyUID}/series/${mr}/instances?includefield=all`);
    for (const tag of ['00180050', '00280030', '00281050', '00200052', '00100010']) expect(instance![tag], tag).toBeDefined();
    expect(instance!['7FE00010']!.BulkDataURI).toMatch(/^http:.*\/bulkdata\/7FE00010$/);
  });
});

describe('paging', () => {
  const warning = (response: Response) => response.headers.get('warning') ?? '';

  it('says when more results can be asked for', async () => {
    const page = await get('/studies?PatientID=QIDO-*&limit=2');
    expect((await page.json()).length).toBe(2);
    expect(warning(page)).toMatch(/^299 .*: There are additional results that can be requested$/);
    const last = await get('/studies?PatientID=QIDO-*&limit=2&offset=2');
    expect((await last.json()).length).toBe(1);
    expect(warning(last)).toBe('');
    const browser = await adminFetch(`${server.dicomweb}/studies?limit=1`, { headers: { Origin: 'http://viewer.example' } });
    expect(browser.headers.get('access-control-expose-headers')).toMatch(/\bWarning\b/);
  });

  it('answers limit=0 with no results, and the Warning when some match', async () => {
    const some = await get('/studies?PatientID=QIDO-1&limit=0');
    expect(await some.json()).toEqual([]);
    expect(warning(some)).toMatch(/additional results/);
    const none = await get('/studies?PatientID=NOBODY&limit=0');
    expect(await none.json()).toEqual([]);
    expect(warning(none)).toBe('');
  });
});
