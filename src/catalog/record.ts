import { firstString, type BulkDataRanges, type DicomJson, type JsonAttribute } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import type { SeriesRow, StudyRow } from './catalog.js';
import type { FrameRange } from '../dicom/frames.js';

/** Attributes answered at study and series level (PS3.18 Table 10.6.3-3 and 10.6.3-4, plus common extras). */
export const STUDY_TAGS = [
  Tag.SpecificCharacterSet, Tag.StudyDate, Tag.StudyTime, Tag.AccessionNumber, '00080051', '00080201',
  Tag.ReferringPhysicianName, Tag.StudyDescription, Tag.PatientName, Tag.PatientID, '00100021',
  Tag.PatientBirthDate, Tag.PatientSex, '00101010', '00101020', '00101030', '00102160', '00104000',
  Tag.StudyInstanceUID, Tag.StudyID,
] as const;
export const SERIES_TAGS = [
  Tag.SpecificCharacterSet, Tag.Modality, Tag.SeriesInstanceUID, Tag.SeriesNumber, Tag.SeriesDescription,
  Tag.SeriesDate, Tag.SeriesTime, '00180015', '00080070', '00081090', '00200060', '00400244', '00400245', '00400275', '00080201',
] as const;
/** Instance-level defaults of PS3.18 Table 10.6.3-5, plus what viewers sort and lay out by. */
export const INSTANCE_TAGS = [
  Tag.SpecificCharacterSet, Tag.SOPClassUID, Tag.SOPInstanceUID, Tag.InstanceNumber, Tag.Rows, Tag.Columns,
  Tag.BitsAllocated, Tag.NumberOfFrames, '00080023', '00080033', '00200032', '00200037', '00201041', '00080201',
] as const;

/** The study attributes every study result carries (PS3.18 Table 10.6.3-3), counts kept in the index. */
export function studyAttributes(row: StudyRow, stored: DicomJson): DicomJson {
  return {
    ...pick(stored, STUDY_TAGS),
    // Left out when no series has a Modality: OHIF 3.13 reads ModalitiesInStudy.Value.length and its study list fails on `{vr:'CS'}`.
    ...(row.modalities ? { [Tag.ModalitiesInStudy]: { vr: 'CS', Value: row.modalities.split('\\') } } : {}),
    [Tag.NumberOfStudyRelatedSeries]: { vr: 'IS', Value: [row.numSeries] },
    [Tag.NumberOfStudyRelatedInstances]: { vr: 'IS', Value: [row.numInstances] },
  };
}

/** The series attributes every series result carries (PS3.18 Table 10.6.3-4). */
export function seriesAttributes(row: SeriesRow, stored: DicomJson, study: DicomJson): DicomJson {
  return {
    ...pick(stored, SERIES_TAGS),
    [Tag.StudyInstanceUID]: study[Tag.StudyInstanceUID]!,
    [Tag.NumberOfSeriesRelatedInstances]: { vr: 'IS', Value: [row.numInstances] },
  };
}

/**
 * What is kept of an instance for its study and its series: the default attributes above, and the other attributes of
 * the Patient, Patient Study and General Study modules, or of the General Series and General Equipment modules
 * (PS3.3 C.7.1.1, C.7.2.1-2, C.7.3.1, C.7.5.1), which `includefield=all` answers.
 */
const STUDY_LEVEL = new Set<string>([
  ...STUDY_TAGS, '00080090', '00080096', '00081030', '00081032', '00081048', '00081049', '00081060', '00081062', '00081080',
  '00081084', '00081110', '00321032', '00321033', '00321034', '00321060', '00321064', '00380010', '00380014', '00400250',
]);
const SERIES_LEVEL = new Set<string>([
  ...SERIES_TAGS, '00080080', '00080081', '00081010', '00081040', '00081050', '00081052', '00081070', '00081072', '00081111',
  '00081250', '00181000', '00181020', '00185100', '00200052', '00201040', '00280108', '00280109', '00400253', '00400254', '00400260',
]);

function studyLevel(json: DicomJson): DicomJson {
  // Group 0010 holds the Patient and Patient Study modules whole (PS3.6): all of it belongs to the study.
  return pick(json, Object.keys(json).filter((tag) => tag.startsWith('0010') || STUDY_LEVEL.has(tag)));
}

export function pick(json: DicomJson, tags: readonly string[]): DicomJson {
  const out: DicomJson = {};
  for (const tag of tags) if (json[tag]) out[tag] = json[tag];
  return out;
}

export type IndexRecord = {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  objectKey: string;
  size: number;
  sha256: string;
  inflated: boolean;
  frames: FrameRange[];
  /** Where each bulk data value other than the pixel data lies, in the same bytes as the frames. */
  bulkData: BulkDataRanges;
  json: DicomJson;
};

/** Row values for the three levels, taken from one instance's DICOM JSON. */
export function rowsOf(record: IndexRecord, now = Date.now()) {
  const j = record.json;
  const name = nameGroups(j[Tag.PatientName]);
  const int = (tag: string) => {
    const v = Number(firstString(j, tag));
    return Number.isFinite(v) ? Math.trunc(v) : null;
  };
  // Descriptions are matched case-insensitively, so their columns hold the folded text (the JSON keeps the original).
  const folded = (tag: string) => {
    const v = firstString(j, tag);
    return v === undefined ? null : foldText(v);
  };
  return {
    study: {
      studyUid: record.studyUid,
      patientId: firstString(j, Tag.PatientID) ?? null,
      patientNameAlphabetic: name.alphabetic,
      patientNameIdeographic: name.ideographic,
      patientNamePhonetic: name.phonetic,
      patientBirthDate: firstString(j, Tag.PatientBirthDate) ?? null,
      patientSex: firstString(j, Tag.PatientSex) ?? null,
      studyDate: firstString(j, Tag.StudyDate) ?? null,
      studyTime: normalizeTime(firstString(j, Tag.StudyTime)),
      accessionNumber: firstString(j, Tag.AccessionNumber) ?? null,
      studyId: firstString(j, Tag.StudyID) ?? null,
      studyDescription: folded(Tag.StudyDescription),
      referringPhysicianName: nameGroups(j[Tag.ReferringPhysicianName]).alphabetic,
      json: JSON.stringify(studyLevel(j)),
      updatedAt: now,
    },
    series: {
      seriesUid: record.seriesUid,
      studyUid: record.studyUid,
      modality: firstString(j, Tag.Modality) ?? null,
      seriesNumber: int(Tag.SeriesNumber),
      seriesDescription: folded(Tag.SeriesDescription),
      seriesDate: firstString(j, Tag.SeriesDate) ?? null,
      seriesTime: normalizeTime(firstString(j, Tag.SeriesTime)),
      bodyPartExamined: firstString(j, '00180015') ?? null,
      performedProcedureStepStartDate: firstString(j, Tag.PerformedProcedureStepStartDate) ?? null,
      json: JSON.stringify(pick(j, [...SERIES_LEVEL])),
    },
    instance: {
      sopUid: record.sopUid,
      seriesUid: record.seriesUid,
      studyUid: record.studyUid,
      sopClassUid: record.sopClassUid,
      instanceNumber: int(Tag.InstanceNumber),
      transferSyntaxUid: record.transferSyntaxUid,
      numberOfFrames: Math.max(1, int(Tag.NumberOfFrames) ?? 1),
      rows: int(Tag.Rows),
      columns: int(Tag.Columns),
      objectKey: record.objectKey,
      size: record.size,
      sha256: record.sha256,
      inflated: record.inflated,
      frames: JSON.stringify(record.frames),
      bulkData: JSON.stringify(record.bulkData),
      json: JSON.stringify(j),
      createdAt: now,
      // New bytes (an overwrite allowed by the operator) are whole until a read or a verify pass says otherwise.
      damage: null,
      damageFoundAt: null,
    },
  };
}

/**
 * Text as case-insensitive matching compares it, index and query alike: NFC, lower case, and final sigma as
 * sigma, since toLowerCase turns a word-final Σ into ς and "ΔΙΟΝΥΣ*" must still find "Διονυσιος".
 */
export function foldText(text: string): string {
  return text.normalize('NFC').toLowerCase().replaceAll('ς', 'σ');
}

/** Folded groups of the first person name value; trailing empty components (`Doe^Jane^^^`) say nothing. */
export function nameGroups(attribute: JsonAttribute | undefined): { alphabetic: string | null; ideographic: string | null; phonetic: string | null } {
  const value = attribute?.Value?.[0] as Record<string, string> | null | undefined;
  const norm = (s: string | undefined) => (s ? trimNameComponents(foldText(s)) || null : null);
  return { alphabetic: norm(value?.Alphabetic), ideographic: norm(value?.Ideographic), phonetic: norm(value?.Phonetic) };
}

export function trimNameComponents(group: string): string {
  return group.replace(/[\^ ]+$/, '');
}

/** TM values compare as text once colons (ACR-NEMA style) are dropped. */
export function normalizeTime(tm: string | undefined): string | null {
  return tm ? tm.replace(/:/g, '') : null;
}
