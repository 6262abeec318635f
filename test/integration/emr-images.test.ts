import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { patientStudiesResponse, studyImagesResponse } from '../../src/api/images.js';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * The EMR's images (issue 16): a study's images by series with signed, expiring links that work with no header and
 * cannot be edited into another image or answer; one image's links; the patient's imaging history.
 */

type Links = { thumbnail?: string; rendered?: string; dicom?: string };
type Image = { sop_instance_uid: string; instance_number: number | null; frames: number; size: number; content_types: Record<string, string>; links: Links; expires_at: string };
type Series = { series_uid: string; series_number: number | null; series_description: string | null; modality: string | null; instance_count: number; images: Image[] };

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const PATIENT = 'EMR-0042';

let server: RunningServer;
let emr: Record<string, string>;
let reader: Record<string, string>;
const study = newUid();
const ctSeries = newUid();
const ct = [1, 2, 3].map((n) => syntheticInstance({ studyUID: study, seriesUID: ctSeries, modality: 'CT', seriesNumber: 1, instanceNumber: n, patientID: PATIENT, studyDate: '20260105', seriesDescription: 'Axial' }));
const mr = syntheticSeries(1, { studyUID: study, modality: 'MR', seriesNumber: 2, patientID: PATIENT, studyDate: '20260105' });
/** The patient's older studies, and one of another issuer's patient with the same ID. */
const older = [newUid(), newUid()];
const otherIssuer = newUid();

async function key(role: string): Promise<Record<string, string>> {
  const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: role, role }) });
  expect(made.status).toBe(201);
  return { Authorization: `Bearer ${((await made.json()) as { key: string }).key}` };
}

beforeAll(async () => {
  server = await startServer();
  expect((await stow(server.dicomweb, [...ct, ...mr])).status).toBe(200);
  for (const [uid, date] of [[older[0]!, '20240301'], [older[1]!, '20250720']] as const) expect((await stow(server.dicomweb, syntheticSeries(1, { studyUID: uid, patientID: PATIENT, studyDate: date }))).status).toBe(200);
  const issuer = [{ tag: '00100021', vr: 'LO', value: 'OTHER-HOSPITAL' }];
  expect((await stow(server.dicomweb, [syntheticInstance({ studyUID: otherIssuer, patientID: PATIENT, studyDate: '20260601', extra: issuer })])).status).toBe(200);
  [emr, reader] = [await key('viewer-links'), await key('read')];
});

afterAll(async () => {
  await server?.stop();
});

async function images(query = ''): Promise<{ study_uid: string; patient_id: string; series: Series[] }> {
  const response = await fetch(`${server.url}/api/v1/studies/${study}/images${query}`, { headers: emr });
  expect(response.status, await response.clone().text()).toBe(200);
  const body = await response.json();
  // The answer is what the exported schema (and so the OpenAPI document) says.
  studyImagesResponse.parse(body);
  return body;
}

describe('the EMR’s images', () => {
  it('lists a study’s images by series with signed links that work with no header', async () => {
    const listed = await images('?expires_in=600');
    expect(listed).toMatchObject({ study_uid: study, patient_id: PATIENT });
    expect(listed.series.map((s) => [s.modality, s.series_number, s.instance_count])).toEqual([['CT', 1, 3], ['MR', 2, 1]]);
    const [axial] = listed.series;
    expect(axial!.series_description).toBe('Axial');
    expect(axial!.images.map((i) => i.instance_number)).toEqual([1, 2, 3]);
    const first = axial!.images[0]!;
    expect(first).toMatchObject({ frames: 1, size: ct[0]!.length, content_types: { thumbnail: 'image/jpeg', rendered: 'image/jpeg', dicom: 'application/dicom' } });
    expect(Date.parse(first.expires_at) - Date.now()).toBeGreaterThan(590_000);
    for (const kind of ['thumbnail', 'rendered'] as const) {
      const image = await fetch(first.links[kind]!);
      expect(image.status, kind).toBe(200);
      expect(image.headers.get('content-type')).toBe('image/jpeg');
      expect(image.headers.get('cache-control')).toMatch(/^private, max-age=(59\d|600)$/);
      expect([...new Uint8Array(await image.arrayBuffer()).subarray(0, 2)]).toEqual([0xff, 0xd8]);
    }
    const file = await fetch(first.links.dicom!);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('application/dicom');
    expect(sha256(new Uint8Array(await file.arrayBuffer()))).toBe(sha256(ct[0]!));
    // Each access is audited under the study.
    const audit = JSON.stringify(await (await adminFetch(`${server.url}/api/v1/audit?study=${study}&limit=50`)).json());
    expect(audit).toContain(`/api/v1/images/${first.sop_instance_uid}/dicom`);
    expect(audit).not.toContain('sig=');
  });

  it('refuses a link edited into another image or kind, a forged or expired one, and takes no link as a credential', async () => {
    const [axial] = (await images('?expires_in=1')).series;
    const [a, b] = axial!.images;
    const link = new URL(a!.links.thumbnail!);
    const sig = link.searchParams.get('sig')!;
    const refusals: Array<[string, RegExp]> = [
      [link.href.replace(a!.sop_instance_uid, b!.sop_instance_uid), /another image or another kind/],
      [link.href.replace('/thumbnail?', '/dicom?'), /another image or another kind/],
      [`${link.origin}${link.pathname}?sig=${sig.slice(0, -4)}${sig.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`, /does not verify/],
      [`${link.origin}${link.pathname}`, /no signature/],
    ];
    for (const [url, reason] of refusals) {
      const refused = await fetch(url);
      expect(refused.status, url).toBe(403);
      expect((await refused.json()).detail, url).toMatch(reason);
    }
    // Neither a credential for DICOMweb, nor is a viewer token a link.
    expect((await fetch(`${server.dicomweb}/studies/${study}/series`, { headers: { Authorization: `Bearer ${sig}` } })).status).toBe(401);
    const viewer = await (await fetch(`${server.url}/api/v1/studies/${study}/viewer-url`, { headers: emr })).json();
    const token = new URL(viewer.viewer_url).searchParams.get('token')!;
    expect((await fetch(`${link.origin}${link.pathname}?sig=${token}`)).status).toBe(403);
    // Past its life (and the clock tolerance replicas are allowed).
    await new Promise((resolve) => setTimeout(resolve, 7000));
    const expired = await fetch(a!.links.thumbnail!);
    expect(expired.status).toBe(403);
    expect((await expired.json()).detail).toMatch(/expired/);
  }, 30_000);

  it('gives one image’s links, of one kind when asked, and refuses what the caller may not ask', async () => {
    const sop = (await images()).series[1]!.images[0]!.sop_instance_uid;
    const one = await (await fetch(`${server.url}/api/v1/images/${sop}/url?kind=dicom&expires_in=60`, { headers: emr })).json();
    expect(Object.keys(one.links)).toEqual(['dicom']);
    expect((await fetch(one.links.dicom)).status).toBe(200);
    expect((await fetch(`${server.url}/api/v1/images/${sop}/url?kind=pdf`, { headers: emr })).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/images/${newUid()}/url`, { headers: emr })).status).toBe(404);
    expect((await fetch(`${server.url}/api/v1/images/${sop}/url?expires_in=999999`, { headers: emr })).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/studies/${study}/images`, { headers: reader })).status).toBe(403);
  });

  it('gives the patient’s imaging history, newest first, with thumbnails, paged, by issuer, with viewer links on request', async () => {
    const history = async (query = '') => {
      const response = await fetch(`${server.url}/api/v1/patients/${PATIENT}/studies${query}`, { headers: emr });
      expect(response.status, await response.clone().text()).toBe(200);
      return patientStudiesResponse.parse(await response.json()) as { studies: Array<{ study_uid: string; study_date: string; thumbnail_url: string | null; viewer_url?: string }> };
    };
    const all = await history();
    expect(all.studies.map((s) => s.study_uid)).toEqual([otherIssuer, study, older[1], older[0]]);
    expect(all.studies.every((s) => s.viewer_url === undefined)).toBe(true);
    const thumbnail = await fetch(all.studies[1]!.thumbnail_url!);
    expect(thumbnail.status).toBe(200);
    expect((await history('?limit=2&offset=1')).studies.map((s) => s.study_uid)).toEqual([study, older[1]]);
    expect((await history('?issuer=OTHER-HOSPITAL')).studies.map((s) => s.study_uid)).toEqual([otherIssuer]);
    expect((await history('?issuer=')).studies).toHaveLength(4);
    const linked = await history('?viewer_links=true&limit=1');
    expect(new URL(linked.studies[0]!.viewer_url!).searchParams.get('StudyInstanceUIDs')).toBe(otherIssuer);
    expect((await fetch(`${server.url}/api/v1/patients/${PATIENT}/studies?limit=1000`, { headers: emr })).status).toBe(400);
    expect((await fetch(`${server.url}/api/v1/patients/EMR-00*/studies`, { headers: emr })).status).toBe(400);
    const misspelt = await fetch(`${server.url}/api/v1/patients/${PATIENT}/studies?viewer_link=true`, { headers: emr });
    expect(misspelt.status).toBe(400);
    expect(((await misspelt.json()) as { detail: string }).detail).toContain('viewer_link');
    expect((await fetch(`${server.url}/api/v1/images/${newUid()}/url?kind=png`, { headers: emr })).status).toBe(400);
    const lookup = async (query: string) => (await (await fetch(`${server.url}/api/v1/studies?patient_id=${PATIENT}${query}`, { headers: emr })).json()) as Array<{ study_uid: string }>;
    const everyStudy = await lookup('');
    expect(everyStudy).toHaveLength(4);
    expect(await lookup('&limit=2&offset=1')).toEqual(everyStudy.slice(1, 3));
    expect((await fetch(`${server.url}/api/v1/studies?patient_id=${PATIENT}&limit=101`, { headers: emr })).status).toBe(400);
  });
});
