import dicomParser from 'dicom-parser';
import type { Catalog, StudyRow } from '../catalog/catalog.js';
import { isMatchingKey, isUidListKey, isUniversal, MAX_VALUES_PER_KEY, QueryError, type Level, type MatchKey, type QidoQuery } from '../catalog/qido.js';
import { pick, seriesAttributes, studyAttributes } from '../catalog/record.js';
import { isKnownCharacterSet } from '../dicom/charset.js';
import type { DicomJson, JsonAttribute } from '../dicom/json.js';
import { toDicomJson } from '../dicom/json.js';
import { lookupTag, Tag } from '../dicom/tags.js';
import { fileMetaInformation, writeDataSet, type WriteElement } from '../dicom/write.js';
import { DimseStatus, errorComment } from './status.js';

/** Query/Retrieve Information Model FIND SOP classes (PS3.4 C.6.1.1.2, C.6.2.1.2). */
export const PATIENT_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.1.1';
export const STUDY_ROOT_FIND = '1.2.840.10008.5.1.4.1.2.2.1';
export const QUERY_CLASSES = new Set([PATIENT_ROOT_FIND, STUDY_ROOT_FIND]);


/**
 * Matches answered to one C-FIND: past this the SCU has the first MAX_MATCHES and a final Out of Resources (A700,
 * PS3.4 C.4.1.1.4) telling it to narrow the query, rather than a Success that would claim the list whole.
 */
export const MAX_MATCHES = 10_000;
/** Rows read from the index at a time: cancellation and the socket's backpressure are heeded between pages. */
const PAGE = 500;
/** A matching value longer than any PN (3 groups of 64) or LO is no one's name: a hostile pattern. */
const MAX_VALUE_CHARS = 1024;
/** Keys of one identifier; a modality asks for a few dozen. */
const MAX_KEYS = 1000;
const SUMMARY_CHARS = 256;
/** VRs whose JSON values are numbers written in binary (PS3.5 6.2); IS and DS are text. */
const NUMERIC_VRS = new Set(['US', 'SS', 'UL', 'SL', 'FL', 'FD']);

const QUERY_RETRIEVE_LEVEL = '00080052';
const RETRIEVE_AE_TITLE = '00080054';
/** PS3.4 C.6.1.1.2: the counts a PATIENT level match may answer. */
const PATIENT_COUNTS = { studies: '00201200', series: '00201202', instances: '00201204' } as const;

type FindLevel = 'PATIENT' | 'STUDY' | 'SERIES' | 'IMAGE';
/** Unique keys of each level and those above it (PS3.4 C.6.1.1 / C.6.2.1), always answered. */
const UNIQUE_KEYS: Record<FindLevel, string[]> = {
  PATIENT: [Tag.PatientID],
  STUDY: [Tag.StudyInstanceUID],
  SERIES: [Tag.StudyInstanceUID, Tag.SeriesInstanceUID],
  IMAGE: [Tag.StudyInstanceUID, Tag.SeriesInstanceUID, Tag.SOPInstanceUID],
};

/** A refusal of the whole C-FIND, with its status and an ErrorComment (LO: 64 characters). */
class FindRefused extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A C-FIND as it arrived: the identifier's bytes in the context's transfer syntax, and the model asked. */
export type FindRequest = { identifier: Buffer; transferSyntaxUid: string; sopClassUid: string };
/** Where matches go: `send` resolves when the connection can take more; `cancelled` tells of a C-CANCEL. */
export type FindResponder = { send(match: Buffer, status: number): Promise<void>; cancelled(): boolean };
/** How a C-FIND ended: its final status, why when it failed, and a short summary of what was asked (for the audit). */
export type FindOutcome = { status: number; errorComment?: string; matches: number; summary: string };

/** The search a C-FIND identifier asks for, in the terms QIDO-RS searches the index with. */
type Search = { level: FindLevel; keys: MatchKey[]; returnKeys: Map<string, string>; unsupported: boolean; summary: string };

/**
 * C-FIND (PS3.4 C.4.1) for the Patient Root and Study Root models, answered from the index by the same search QIDO-RS
 * runs (catalog/qido.ts: wildcards, ranges, UID lists, person names folded in every component group). The identifier
 * is decoded from its Specific Character Set by this server's own parser, ISO 2022 code extensions included; answers
 * are in UTF-8 (ISO_IR 192). Hierarchical keys are not insisted on: a key of a level above matches as it would in QIDO.
 */
export async function answerFind(catalog: Catalog, aeTitle: string, request: FindRequest, responder: FindResponder): Promise<FindOutcome> {
  let summary = '';
  let matches = 0;
  try {
    const search = searchOf(request);
    summary = search.summary;
    const status = search.unsupported ? DimseStatus.PendingUnsupportedKeys : DimseStatus.Pending;
    for await (const json of matchesOf(catalog, search)) {
      if (responder.cancelled()) break;
      await responder.send(writeDataSet(answerOf(json, search, aeTitle), request.transferSyntaxUid), status);
      matches++;
    }
  } catch (err) {
    if (!(err instanceof FindRefused || err instanceof QueryError)) throw err;
    const status = err instanceof FindRefused ? err.status : DimseStatus.IdentifierDoesNotMatch;
    return { status, errorComment: errorComment(err.message), matches, summary };
  }
  return { status: responder.cancelled() ? DimseStatus.Cancel : DimseStatus.Success, matches, summary };
}

function searchOf(request: FindRequest): Search {
  const identifier = parseIdentifier(request);
  const level = levelOf(identifier, request.sopClassUid);
  const keys: MatchKey[] = [];
  const returnKeys = new Map<string, string>();
  let unsupported = false;
  for (const [tag, attribute] of Object.entries(identifier)) {
    if (tag === QUERY_RETRIEVE_LEVEL || tag === Tag.SpecificCharacterSet) continue;
    const keyword = lookupTag(tag)?.keyword ?? tag;
    returnKeys.set(tag, attribute.vr);
    const value = matchingValue(attribute);
    if (attribute.vr === 'SQ' ? !attribute.Value?.length : isUniversal(value)) continue;
    if (attribute.vr === 'SQ' || !isMatchingKey(tag)) {
      // PS3.4 C.2.2.1.2: an optional key the SCP does not match on is answered as a return key, and Pending says so.
      unsupported = true;
      continue;
    }
    const limit = isUidListKey(tag) ? MAX_VALUES_PER_KEY * 65 : MAX_VALUE_CHARS;
    if (value.length > limit) throw new FindRefused(DimseStatus.UnableToProcess, `${keyword} is ${value.length} characters; at most ${limit}`);
    if (level === 'PATIENT' && !tag.startsWith('0010')) throw new FindRefused(DimseStatus.IdentifierDoesNotMatch, `${keyword} is not a PATIENT level key`);
    keys.push({ tag, keyword, value });
  }
  const summary = [level, ...keys.map((k) => `${k.keyword}=${k.value.slice(0, 64)}`)].join(' ').slice(0, SUMMARY_CHARS);
  return { level, keys, returnKeys, unsupported, summary };
}

/**
 * The identifier decoded by this server's parser and DICOM JSON conversion, which honour every Specific Character Set
 * STOW-RS takes; dcmjs decodes only the first term of one, and none of the ISO 2022 code extensions.
 */
function parseIdentifier({ identifier, transferSyntaxUid, sopClassUid }: FindRequest): DicomJson {
  let json: DicomJson;
  try {
    const meta = fileMetaInformation({ transferSyntaxUID: transferSyntaxUid, sopClassUID: sopClassUid, sopInstanceUID: '2.25.0' });
    json = toDicomJson(dicomParser.parseDicom(Buffer.concat([meta, identifier])), { bulkDataBase: '' });
  } catch {
    throw new FindRefused(DimseStatus.UnableToProcess, 'the identifier is not a readable DICOM data set');
  }
  const keys = Object.keys(json).length;
  if (keys > MAX_KEYS) throw new FindRefused(DimseStatus.UnableToProcess, `the identifier has ${keys} keys; at most ${MAX_KEYS}`);
  const charset = (json[Tag.SpecificCharacterSet]?.Value ?? []).map((v) => String(v ?? ''));
  if (!isKnownCharacterSet(charset)) throw new FindRefused(DimseStatus.UnableToProcess, errorComment(`character set ${charset.join('\\')} is not supported`));
  return json;
}

function levelOf(identifier: DicomJson, sopClassUid: string): FindLevel {
  const level = String(identifier[QUERY_RETRIEVE_LEVEL]?.Value?.[0] ?? '').trim();
  if (level === 'PATIENT' && sopClassUid === PATIENT_ROOT_FIND) return level;
  if (level === 'STUDY' || level === 'SERIES' || level === 'IMAGE') return level;
  const allowed = sopClassUid === PATIENT_ROOT_FIND ? 'PATIENT, STUDY, SERIES or IMAGE' : 'STUDY, SERIES or IMAGE';
  throw new FindRefused(DimseStatus.IdentifierDoesNotMatch, errorComment(`QueryRetrieveLevel "${level}" is not ${allowed}`));
}

/** A key's value as DICOM writes it, which QIDO's matching takes: values joined by `\`, name groups by `=`. */
function matchingValue(attribute: JsonAttribute): string {
  return textValues(attribute).join('\\');
}

function textValues(attribute: JsonAttribute): string[] {
  return (attribute.Value ?? []).map((v) => {
    if (v === null) return '';
    if (typeof v !== 'object') return String(v);
    const name = v as { Alphabetic?: string; Ideographic?: string; Phonetic?: string };
    return [name.Alphabetic ?? '', name.Ideographic ?? '', name.Phonetic ?? ''].join('=').replace(/=+$/, '');
  });
}

/** The index's matches at the level asked, a page at a time, as the DICOM JSON of everything a match may answer. */
async function* matchesOf(catalog: Catalog, search: Search): AsyncGenerator<DicomJson> {
  const query = (level: Level): QidoQuery => ({ level, keys: search.keys, fuzzy: false, limit: PAGE, offset: 0 });
  switch (search.level) {
    case 'PATIENT':
      return yield* patientsOf(catalog, query('study'));
    case 'STUDY':
      for await (const row of paged((q) => catalog.studies(q), query('study'))) yield studyJson(row);
      return;
    case 'SERIES':
      for await (const row of paged((q) => catalog.series(q), query('series'))) {
        const [series, study] = [JSON.parse(row.json) as DicomJson, JSON.parse(row.study.json) as DicomJson];
        yield { ...study, ...studyAttributes(row.study, study), ...series, ...seriesAttributes(row, series, study) };
      }
      return;
    case 'IMAGE':
      for await (const row of paged((q) => catalog.instances(q), query('instance'))) {
        const [series, study] = [JSON.parse(row.series.json) as DicomJson, JSON.parse(row.series.study.json) as DicomJson];
        yield { ...study, ...studyAttributes(row.series.study, study), ...series, ...seriesAttributes(row.series, series, study), ...JSON.parse(row.json) };
      }
      return;
  }
}

/** Rows a page at a time; one row past MAX_MATCHES refuses the rest as Out of Resources. */
async function* paged<R>(find: (query: QidoQuery) => Promise<R[]>, query: QidoQuery): AsyncGenerator<R> {
  for (let offset = 0; ; offset += PAGE) {
    const page = await find({ ...query, offset });
    if (offset + page.length > MAX_MATCHES) {
      yield* page.slice(0, MAX_MATCHES - offset);
      throw new FindRefused(DimseStatus.OutOfResources, `more than ${MAX_MATCHES} matches: narrow the query`);
    }
    yield* page;
    if (page.length < PAGE) return;
  }
}

function studyJson(row: StudyRow): DicomJson {
  const stored = JSON.parse(row.json) as DicomJson;
  return { ...stored, ...studyAttributes(row, stored) };
}

/**
 * Patients are not rows of the index: they are the distinct PatientIDs of the matching studies, each answered with
 * the Patient module of its first study in the index's order and counts summed over its studies. More than
 * MAX_MATCHES matching studies refuse the query whole.
 */
async function* patientsOf(catalog: Catalog, query: QidoQuery): AsyncGenerator<DicomJson> {
  const patients = new Map<string, { json: DicomJson; studies: number; series: number; instances: number }>();
  for await (const row of paged((q) => catalog.studies(q), query)) {
    const stored = JSON.parse(row.json) as DicomJson;
    const id = String(stored[Tag.PatientID]?.Value?.[0] ?? '');
    const patient = patients.get(id) ?? { json: pick(stored, Object.keys(stored).filter((t) => t.startsWith('0010'))), studies: 0, series: 0, instances: 0 };
    patient.studies++;
    patient.series += row.numSeries;
    patient.instances += row.numInstances;
    patients.set(id, patient);
  }
  for (const p of patients.values()) {
    yield {
      ...p.json,
      [PATIENT_COUNTS.studies]: { vr: 'IS', Value: [p.studies] },
      [PATIENT_COUNTS.series]: { vr: 'IS', Value: [p.series] },
      [PATIENT_COUNTS.instances]: { vr: 'IS', Value: [p.instances] },
    };
  }
}

/**
 * The answer to one match (PS3.4 C.4.1.1.3.2): every key asked for, with the match's value or empty, the unique keys
 * of its level, QueryRetrieveLevel, where to retrieve it from, and the character set it is written in.
 */
function answerOf(json: DicomJson, search: Search, aeTitle: string): WriteElement[] {
  const answer: WriteElement[] = [
    { tag: Tag.SpecificCharacterSet, vr: 'CS', value: 'ISO_IR 192' },
    { tag: QUERY_RETRIEVE_LEVEL, vr: 'CS', value: search.level },
    { tag: RETRIEVE_AE_TITLE, vr: 'AE', value: aeTitle },
  ];
  for (const tag of new Set([...UNIQUE_KEYS[search.level], ...search.returnKeys.keys()])) {
    if (tag === RETRIEVE_AE_TITLE) continue;
    const found = json[tag];
    // Bulk data and sequences come back empty, as keys the match has no value for.
    if (!found?.Value || found.vr === 'SQ') {
      const vr = search.returnKeys.get(tag) ?? found?.vr ?? lookupTag(tag)?.vr ?? 'UN';
      answer.push({ tag, vr, value: vr === 'SQ' ? [] : Buffer.alloc(0) });
    } else if (NUMERIC_VRS.has(found.vr)) answer.push({ tag, vr: found.vr, value: found.Value as number[] });
    else answer.push({ tag, vr: found.vr, value: textValues(found) });
  }
  return answer;
}
