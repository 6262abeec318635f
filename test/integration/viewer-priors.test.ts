import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/** EMR links with priors=true: the patient's other studies (PatientID within IssuerOfPatientID), nobody else's. */

type Link = { viewer_url: string; study_uid: string; jti: string; priors: boolean };

const run = randomBytes(3).toString('hex');
const patient = { patientID: `PRI-${run}`, issuer: 'HOSP-A' };
const study = (patientID: string | undefined, issuer: string | undefined, accessionNumber: string) => ({
  studyUID: newUid(),
  patientID,
  accessionNumber,
  extra: issuer === undefined ? [] : [{ tag: '00100021', vr: 'LO' as const, value: issuer }],
});
const current = study(patient.patientID, patient.issuer, `ACC-${run}-1`);
const prior = study(patient.patientID, patient.issuer, `ACC-${run}-2`);
/** Another patient who happens to share the order's accession number. */
const stranger = study(`OTHER-${run}`, patient.issuer, current.accessionNumber);
/** The same PatientID handed out by another hospital: another person. */
const namesake = study(patient.patientID, 'HOSP-B', `ACC-${run}-4`);
const anonymous = study(undefined, undefined, `ACC-${run}-5`);

let server: RunningServer;
const token = (link: Link) => new URL(link.viewer_url).searchParams.get('token')!;
const asToken = (link: Link) => ({ headers: { Authorization: `Bearer ${token(link)}`, Accept: 'application/dicom+json' } });

async function link(path: string, status = 200): Promise<Link> {
  const response = await adminFetch(`${server.url}/api/v1/${path}`);
  expect(response.status, await response.clone().text()).toBe(status);
  return response.json();
}
async function found(l: Link, query = ''): Promise<string[]> {
  const response = await fetch(`${server.dicomweb}/studies${query}`, asToken(l));
  expect(response.status).toBe(200);
  return ((await response.json()) as Array<Record<string, { Value: string[] }>>).map((s) => s['0020000D']!.Value[0]!).sort();
}
const metadataStatus = async (l: Link, studyUID: string) => (await fetch(`${server.dicomweb}/studies/${studyUID}/metadata`, asToken(l))).status;

beforeAll(async () => {
  server = await startServer();
  const files = [current, prior, stranger, namesake, anonymous].map(({ extra, ...s }) => syntheticInstance({ ...s, patientID: s.patientID ?? '', extra }));
  const response = await stow(server.dicomweb, files);
  expect(response.status, await response.text()).toBe(200);
});
afterAll(() => server?.stop());

describe('a viewer link with priors=true', () => {
  it("reads the study and the patient's other study, and no one else's", async () => {
    const l = await link(`studies/${current.studyUID}/viewer-url?priors=true`);
    expect(l.priors).toBe(true);
    expect(await found(l)).toEqual([current.studyUID, prior.studyUID].sort());
    // OHIF looks for priors by PatientID: the namesake of another issuer is not among them.
    expect(await found(l, `?PatientID=${patient.patientID}`)).toEqual([current.studyUID, prior.studyUID].sort());
    expect(await metadataStatus(l, prior.studyUID)).toBe(200);
    for (const other of [stranger, namesake, anonymous]) {
      expect(await metadataStatus(l, other.studyUID), 'another patient').toBe(404);
      expect(await found(l, `?StudyInstanceUID=${other.studyUID}`)).toEqual([]);
    }
  });

  it('without it, reads the one study only', async () => {
    const l = await link(`studies/${current.studyUID}/viewer-url`);
    expect(l.priors).toBe(false);
    expect(await found(l)).toEqual([current.studyUID]);
    expect(await found(l, `?PatientID=${patient.patientID}`)).toEqual([current.studyUID]);
    expect(await metadataStatus(l, prior.studyUID)).toBe(404);
  });

  it("gives the token's jti, which revokes it", async () => {
    const l = await link(`studies/${current.studyUID}/viewer-url?priors=true`);
    const claims = JSON.parse(Buffer.from(token(l).split('.')[1]!, 'base64url').toString()) as { jti: string };
    expect(l.jti).toBe(claims.jti);
    expect((await adminFetch(`${server.url}/api/v1/viewer-tokens/${l.jti}`, { method: 'DELETE' })).status).toBe(204);
    expect(await metadataStatus(l, prior.studyUID)).toBe(401);
  });

  it('is refused for a study without PatientID, and for a value other than true or false', async () => {
    const response = await adminFetch(`${server.url}/api/v1/studies/${anonymous.studyUID}/viewer-url?priors=true`);
    expect(response.status).toBe(409);
    expect((await response.json()).error).toBe('no-patient-id');
    expect((await adminFetch(`${server.url}/api/v1/studies/${current.studyUID}/viewer-url?priors=yes`)).status).toBe(400);
  });
});

describe('a link by accession number', () => {
  it("is narrowed by patient_id when two patients' orders share it", async () => {
    const ambiguous = await adminFetch(`${server.url}/api/v1/viewer-url?accession=${current.accessionNumber}`);
    expect(ambiguous.status).toBe(409);
    expect((await ambiguous.json()).detail).toContain('patient_id');
    const l = await link(`viewer-url?accession=${current.accessionNumber}&patient_id=${patient.patientID}&priors=true`);
    expect(l.study_uid).toBe(current.studyUID);
    expect(await found(l)).toEqual([current.studyUID, prior.studyUID].sort());
    await link(`viewer-url?accession=${current.accessionNumber}&patient_id=NOBODY-${run}`, 404);
  });
});
