import type { Catalog, StudyRow } from '../catalog/catalog.js';
import { MAX_VALUES_PER_KEY } from '../catalog/qido.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import type { PatientRef, Principal } from './principal.js';

const IssuerOfPatientID = '00100021';

/**
 * The studies a principal may read, when it is limited: a viewer token's own study and, with priors, every
 * study stored for its patient (the same PatientID within the same IssuerOfPatientID), looked up at each
 * request so that a study stored after the link was made shows too. undefined: no limit by study.
 */
export async function readableStudies(principal: Principal | undefined, catalog: Catalog): Promise<string[] | undefined> {
  if (principal?.kind !== 'viewer-token') return undefined;
  if (!principal.patient) return [principal.studyUid];
  const priors = await patientStudies(principal.patient, catalog);
  return [principal.studyUid, ...priors.filter((uid) => uid !== principal.studyUid)];
}

async function patientStudies(patient: PatientRef, catalog: Catalog): Promise<string[]> {
  // Matched in SQL by PatientID (wildcards in an ID would widen it), then exactly here, issuer included.
  const rows = await catalog.studies({
    level: 'study',
    keys: [{ tag: Tag.PatientID, keyword: 'PatientID', value: patient.id }],
    fuzzy: false,
    // A search scoped to them lists them as one UID key, which holds this many.
    limit: MAX_VALUES_PER_KEY - 1,
    offset: 0,
  });
  return rows.filter((row) => samePatient(JSON.parse(row.json) as DicomJson, patient)).map((row) => row.studyUid);
}

/** The patient a study's stored attributes name, or undefined when it has no PatientID. */
export function patientOf(study: DicomJson): PatientRef | undefined {
  const id = firstString(study, Tag.PatientID)?.trim();
  return id ? { id, issuer: firstString(study, IssuerOfPatientID)?.trim() ?? '' } : undefined;
}

/** The IssuerOfPatientID a study's stored attributes name; '' when none. */
export function issuerOf(study: StudyRow): string {
  return firstString(JSON.parse(study.json) as DicomJson, IssuerOfPatientID)?.trim() ?? '';
}

function samePatient(study: DicomJson, patient: PatientRef): boolean {
  const named = patientOf(study);
  return named?.id === patient.id && named.issuer === patient.issuer;
}
