import type { SeriesRow, StoredInstance, StudyRow } from '../catalog/catalog.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';

/** FHIR R4 resources of this server, as JSON: ImagingStudy and what goes with it (Bundle, OperationOutcome). */
export type Resource = { resourceType: string } & Record<string, unknown>;

export const FHIR_JSON = 'application/fhir+json';
const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
/** How an identifier names a DICOM UID (FHIR R4 ImagingStudy: `urn:dicom:uid`, the value `urn:oid:<uid>`). */
export const DICOM_UID_SYSTEM = 'urn:dicom:uid';
const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';
const ENDPOINT_ID = 'dicomweb';
const TIMEZONE_OFFSET = '00080201';

/**
 * A study as an ImagingStudy (R4): the Study Instance UID, which fits FHIR's id rules (64 characters of digits and
 * dots), is its id; the patient is an identifier-only reference (this server keeps no Patient resources); the DICOMweb
 * root is its contained Endpoint; its series and their instances listed as stored.
 */
export function imagingStudy(study: StudyRow, series: SeriesRow[], instances: StoredInstance[], dicomwebRoot: string): Resource {
  const json = JSON.parse(study.json) as DicomJson;
  const text = (tag: string) => firstString(json, tag) || undefined;
  const accession = text(Tag.AccessionNumber);
  const patientId = text(Tag.PatientID);
  const issuer = text(Tag.IssuerOfPatientID);
  const started = dateTime(text(Tag.StudyDate), text(Tag.StudyTime), text(TIMEZONE_OFFSET));
  return {
    resourceType: 'ImagingStudy',
    id: study.studyUid,
    contained: [
      {
        resourceType: 'Endpoint',
        id: ENDPOINT_ID,
        status: 'active',
        connectionType: { system: 'http://terminology.hl7.org/CodeSystem/endpoint-connection-type', code: 'dicom-wado-rs' },
        payloadType: [{ text: 'DICOM' }],
        payloadMimeType: ['application/dicom'],
        address: dicomwebRoot,
      },
    ],
    identifier: [
      { use: 'official', system: DICOM_UID_SYSTEM, value: `urn:oid:${study.studyUid}` },
      ...(accession ? [{ use: 'usual', type: { coding: [{ system: V2_0203, code: 'ACSN' }] }, value: accession }] : []),
    ],
    status: 'available',
    ...(study.modalities ? { modality: study.modalities.split('\\').map((code) => ({ system: DCM, code })) } : {}),
    subject: {
      type: 'Patient',
      ...(patientId ? { identifier: { ...(issuer ? { system: issuer } : {}), value: patientId } } : {}),
      ...(text(Tag.PatientName) ? { display: text(Tag.PatientName)!.replaceAll('^', ' ').trim() } : {}),
    },
    ...(started ? { started } : {}),
    endpoint: [{ reference: `#${ENDPOINT_ID}` }],
    numberOfSeries: study.numSeries,
    numberOfInstances: study.numInstances,
    ...(text(Tag.StudyDescription) ? { description: text(Tag.StudyDescription) } : {}),
    series: series.map((row) => seriesOf(row, instances.filter((i) => i.seriesUid === row.seriesUid))),
  };
}

function seriesOf(row: SeriesRow, instances: StoredInstance[]): Record<string, unknown> {
  const json = JSON.parse(row.json) as DicomJson;
  const number = integer(json[Tag.SeriesNumber]?.Value?.[0]);
  const bodyPart = firstString(json, Tag.BodyPartExamined);
  const description = firstString(json, Tag.SeriesDescription);
  return {
    uid: row.seriesUid,
    ...(number !== undefined ? { number } : {}),
    // Required in R4; OT (other) where the series names none.
    modality: { system: DCM, code: firstString(json, Tag.Modality) || 'OT' },
    ...(description ? { description } : {}),
    numberOfInstances: row.numInstances,
    ...(bodyPart ? { bodySite: { display: bodyPart } } : {}),
    instance: instances.map((instance) => {
      const n = integer((JSON.parse(instance.json) as DicomJson)[Tag.InstanceNumber]?.Value?.[0]);
      return { uid: instance.sopUid, sopClass: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${instance.sopClassUid}` }, ...(n !== undefined ? { number: n } : {}) };
    }),
  };
}

/**
 * A FHIR dateTime from a DICOM DA, TM and Timezone Offset From UTC (0008,0201): with a time only when the zone is
 * known, as FHIR requires one with a time and DICOM times are the modality's local time.
 */
function dateTime(date: string | undefined, time: string | undefined, zone: string | undefined): string | undefined {
  const d = /^(\d{4})(\d{2})(\d{2})$/.exec(date ?? '');
  if (!d) return undefined;
  const day = `${d[1]}-${d[2]}-${d[3]}`;
  const t = /^(\d{2})(\d{2})?(\d{2})?/.exec(time ?? '');
  const z = /^([+-])(\d{2})(\d{2})$/.exec(zone ?? '');
  return t && z ? `${day}T${t[1]}:${t[2] ?? '00'}:${t[3] ?? '00'}${z[1]}${z[2]}:${z[3]}` : day;
}

function integer(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : Number(value);
  return value === undefined || value === null || value === '' || !Number.isInteger(n) ? undefined : n;
}

/** An OperationOutcome of one issue (R4 issue-severity, issue-type codes). */
export function operationOutcome(severity: 'error' | 'warning' | 'information', code: string, diagnostics: string): Resource {
  return { resourceType: 'OperationOutcome', issue: [{ severity, code, diagnostics }] };
}

/** The issue-type code of an HTTP status this server answers with. */
export function issueCodeOf(status: number): string {
  if (status === 400) return 'invalid';
  if (status === 401) return 'login';
  if (status === 403) return 'forbidden';
  if (status === 404) return 'not-found';
  if (status === 406 || status === 415) return 'not-supported';
  if (status === 429) return 'throttled';
  return 'exception';
}
