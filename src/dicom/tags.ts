import { dictionaryText } from './dictionary.js';

export type DictionaryEntry = { tag: string; vr: string; keyword: string };

type Dictionary = { byTag: Map<string, DictionaryEntry>; byKeyword: Map<string, DictionaryEntry> };
let parsed: Dictionary | undefined;

/** Parsed on first lookup, not at import: most commands of the command line never look a tag up. */
function dictionary(): Dictionary {
  if (parsed) return parsed;
  const byTag = new Map<string, DictionaryEntry>();
  const byKeyword = new Map<string, DictionaryEntry>();
  for (const line of dictionaryText.split('\n')) {
    if (!line) continue;
    const [tag, vr, keyword, retired] = line.split(' ') as [string, string, string, string?];
    const entry = { tag, vr, keyword };
    byTag.set(tag, entry);
    if (!retired || !byKeyword.has(keyword)) byKeyword.set(keyword, entry);
  }
  parsed = { byTag, byKeyword };
  return parsed;
}

/** Dictionary entry for an 8-hex tag; repeating groups (50xx curves, 60xx overlays) fold to their base. */
export function lookupTag(tag: string): DictionaryEntry | undefined {
  const t = tag.toUpperCase();
  const { byTag } = dictionary();
  const hit = byTag.get(t);
  if (hit) return hit;
  if (/^60[0-9A-F]{2}/.test(t) && Number.parseInt(t.slice(2, 4), 16) % 2 === 0) {
    const base = byTag.get(`6000${t.slice(4)}`);
    return base && { ...base, tag: t };
  }
  if (t.endsWith('0000')) return { tag: t, vr: 'UL', keyword: 'GroupLength' };
  return undefined;
}

/** Resolves a query/includefield key given as keyword or 8-hex tag; undefined when neither. */
export function resolveAttribute(key: string): DictionaryEntry | undefined {
  if (/^[0-9A-Fa-f]{8}$/.test(key)) return lookupTag(key) ?? { tag: key.toUpperCase(), vr: 'UN', keyword: key.toUpperCase() };
  return dictionary().byKeyword.get(key);
}

export function isPrivateTag(tag: string): boolean {
  return Number.parseInt(tag.slice(3, 4), 16) % 2 === 1;
}

/** A Private Creator (gggg,0010-00FF of an odd group), which reserves a block of private elements; its VR is LO (PS3.5 7.8.1). */
export function isPrivateCreator(tag: string): boolean {
  const element = Number.parseInt(tag.slice(4, 8), 16);
  return isPrivateTag(tag) && element >= 0x10 && element <= 0xff;
}

/** Tags named in code, as DICOM JSON spells them. */
export const Tag = {
  SpecificCharacterSet: '00080005',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  SeriesDate: '00080021',
  StudyTime: '00080030',
  SeriesTime: '00080031',
  AccessionNumber: '00080050',
  ModalitiesInStudy: '00080061',
  Modality: '00080060',
  ReferringPhysicianName: '00080090',
  RetrieveURL: '00081190',
  FailedSOPSequence: '00081198',
  ReferencedSOPSequence: '00081199',
  ReferencedSOPClassUID: '00081150',
  ReferencedSOPInstanceUID: '00081155',
  FailureReason: '00081197',
  WarningReason: '00081196',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  PatientName: '00100010',
  PatientID: '00100020',
  IssuerOfPatientID: '00100021',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  StudyID: '00200010',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  BodyPartExamined: '00180015',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  BitsAllocated: '00280100',
  SamplesPerPixel: '00280002',
  AvailableTransferSyntaxUID: '00083002',
  PerformedProcedureStepStartDate: '00400244',
  EncapsulatedDocument: '00420011',
  MIMETypeOfEncapsulatedDocument: '00420012',
  EncapsulatedDocumentLength: '00420015',
  PixelData: '7FE00010',
  FloatPixelData: '7FE00008',
  DoubleFloatPixelData: '7FE00009',
} as const;
