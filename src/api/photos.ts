import fs from 'node:fs/promises';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import { CAPTURE_TYPES, captureInstance, CaptureRefused, dicomDate, dicomTime, uidMaker, type CaptureContext, type CaptureType } from '../capture/capture.js';
import type { Env, Services } from '../context.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { NotFound } from '../errors.js';
import { FailureReason, IngestBatch, type InstanceOutcome } from '../ingest/ingest.js';
import { answerForm, date, formResponse, MAX_FORM_FILES, parseForm, text, withUpload, type ReceivedFile } from './form-upload.js';
import type { Operation } from './openapi.js';
import { studyQuery } from './studies.js';

const seriesFields = {
  series_description: text(64, 'series_description').optional().describe('SeriesDescription, e.g. "Wound, left heel"'),
  body_part: z.string().trim().toUpperCase().regex(/^[A-Z0-9 _]{1,16}$/, 'body_part is a DICOM body part such as FOOT or SKIN (16 letters at most)').optional().describe('BodyPartExamined'),
};
/** A new study's patient and order, as the EMR's order or the technician's form gives them. */
export const newStudyForm = z.strictObject({
  patient_id: text(64, 'patient_id').min(1, 'patient_id is required').describe('PatientID'),
  patient_name: text(64, 'patient_name').optional().describe('PatientName as Family^Given'),
  issuer: text(64, 'issuer').optional().describe('IssuerOfPatientID'),
  patient_birth_date: date('patient_birth_date').optional(),
  patient_sex: z.enum(['M', 'F', 'O']).optional(),
  accession_number: text(16, 'accession_number').optional().describe('AccessionNumber of the order'),
  study_date: date('study_date').optional().describe('StudyDate; today when not given'),
  study_description: text(64, 'study_description').optional(),
  ...seriesFields,
});
/** Photos or documents joining a stored study take its patient and order; only their series is described. */
export const addToStudyForm = z.strictObject(seriesFields);

export const captureResponse = formResponse({ series_uid: z.string().nullable(), sop_class_uid: z.string().nullable() }).extend({ study_uid: z.string() });

const FILES = `JPEG, PNG or PDF files as form-data parts with a filename (at most ${MAX_FORM_FILES}); each becomes one instance.`;
export const photosOperations: Operation[] = [
  {
    method: 'post', path: '/photos', id: 'photosNewStudy', tag: 'Photos and documents', access: 'upload', form: { fields: newStudyForm, files: FILES },
    summary: 'Store photos and PDFs as a new study',
    description: 'JPEG and PNG become VL Photographic Images (modality XC; a baseline JPEG is kept as it is, without EXIF, which carries GPS positions), PDFs Encapsulated PDF (modality DOC), in one series each, under new UIDs from PACS_UID_ROOT.',
    responses: { 200: { description: 'every file stored', json: captureResponse }, 202: { description: 'some files refused, each with the reason', json: captureResponse } },
  },
  {
    method: 'post', path: '/studies/{study}/photos', id: 'photosIntoStudy', tag: 'Photos and documents', access: 'upload', pathParams: { study: 'the Study Instance UID of a stored study' }, form: { fields: addToStudyForm, files: FILES },
    summary: 'Add photos and PDFs to a stored study', description: 'They take the study\'s patient and order, in a new series.',
    responses: { 200: { description: 'every file stored', json: captureResponse }, 202: { description: 'some files refused, each with the reason', json: captureResponse } },
  },
];

/**
 * Photos and documents as DICOM (issue 15), for an EMR, a phone app or the upload page: each file is made into an
 * instance (capture/capture.ts) and stored through the same ingest as STOW-RS, in the upload log under door `photos`.
 */
export function photosApi(services: Services) {
  const router = new Hono<Env>();
  const newUid = uidMaker(services.config.uidRoot);

  const receive = async (c: Context<Env>, study: { uid: string; json: DicomJson | undefined; nextSeriesNumber: number }, fields: Record<string, string>, files: ReceivedFile[]) => {
    const form = study.json ? parseForm(addToStudyForm, fields) : parseForm(newStudyForm, fields);
    const now = new Date();
    const stored = study.json;
    const own = form as z.infer<typeof newStudyForm>;
    const value = (tag: string, given: string | undefined) => (stored ? (firstString(stored, tag) ?? '') : (given ?? ''));
    const base = {
      patient: { id: value(Tag.PatientID, own.patient_id), name: value(Tag.PatientName, own.patient_name), birthDate: value(Tag.PatientBirthDate, own.patient_birth_date), sex: value(Tag.PatientSex, own.patient_sex), issuer: value(Tag.IssuerOfPatientID, own.issuer) },
      study: {
        uid: study.uid,
        date: stored ? value(Tag.StudyDate, undefined) : (own.study_date ?? dicomDate(now)),
        time: stored ? value(Tag.StudyTime, undefined) : own.study_date ? '' : dicomTime(now),
        accessionNumber: value(Tag.AccessionNumber, own.accession_number),
        description: value(Tag.StudyDescription, own.study_description),
        id: value(Tag.StudyID, undefined),
        referringPhysician: value(Tag.ReferringPhysicianName, undefined),
      },
    };
    // Photos in one new series, documents in another.
    const seriesOf = new Map<'photo' | 'document', CaptureContext['series']>();
    const seriesFor = (kind: 'photo' | 'document') => {
      let series = seriesOf.get(kind);
      if (!series) {
        series = { uid: newUid(), number: study.nextSeriesNumber + seriesOf.size, description: form.series_description ?? (kind === 'photo' ? 'Photos' : 'Documents'), bodyPart: form.body_part ?? '' };
        seriesOf.set(kind, series);
      }
      return series;
    };
    const batch = new IngestBatch(services.ingest, study.uid);
    const receipts: Array<{ file: string; outcome: Promise<InstanceOutcome> }> = [];
    const counters = new Map<string, number>();
    for (const file of files) {
      try {
        const type = captureTypeOf(file.declared, file.name);
        if (!type) throw new CaptureRefused(`${file.declared || 'an unnamed type'} is not a photo or a document this server takes: send JPEG, PNG or PDF`);
        const series = seriesFor(type === 'application/pdf' ? 'document' : 'photo');
        const instanceNumber = (counters.get(series.uid) ?? 0) + 1;
        counters.set(series.uid, instanceNumber);
        await file.spooled.written;
        const bytes = await fs.readFile(file.spooled.path);
        const instance = await captureInstance(bytes, type, { ...base, series, instanceNumber, sopInstanceUid: newUid(), now });
        receipts.push({ file: file.name, outcome: (await batch.add(oneChunk(instance))).outcome });
      } catch (e) {
        if (!(e instanceof CaptureRefused)) throw e;
        receipts.push({ file: file.name, outcome: batch.reject(FailureReason.CannotUnderstand, e.message).outcome });
      }
    }
    await batch.commit();
    const outcomes = await Promise.all(receipts.map((r) => r.outcome));
    c.set('auditStudyUids', [study.uid]);
    return answerForm(c, services, 'photos', receipts.map((r, i) => ({ file: r.file, outcome: outcomes[i]! })), (o) => ({ series_uid: o.seriesUid ?? null, sop_class_uid: o.sopClassUid ?? null }), { study_uid: study.uid });
  };

  router.post('/photos', allow('upload'), async (c) =>
    withUpload(c, services, async (fields, files) => receive(c, { uid: newUid(), json: undefined, nextSeriesNumber: 1 }, fields, files)),
  );

  router.post('/studies/:study/photos', allow('upload'), async (c) => {
    const { studyUid } = pathScope(c);
    const [row] = await services.catalog.studies(studyQuery([], studyUid, 1));
    if (!row) throw new NotFound('no study with that UID is stored; to make a new one, POST /api/v1/photos with the patient\'s details');
    const series = await services.catalog.series({ level: 'series', studyUid, keys: [], fuzzy: false, limit: row.numSeries + 1, offset: 0 });
    const numbers = series.map((s) => Number((JSON.parse(s.json) as DicomJson)[Tag.SeriesNumber]?.Value?.[0])).filter(Number.isFinite);
    return withUpload(c, services, async (fields, files) => receive(c, { uid: studyUid, json: JSON.parse(row.json) as DicomJson, nextSeriesNumber: Math.max(0, ...numbers) + 1 }, fields, files));
  });

  return router;
}

async function* oneChunk(bytes: Buffer): AsyncGenerator<Uint8Array> {
  yield bytes;
}

/** The file's type as its part says, or by its name's extension when the sender said only "octet-stream". */
function captureTypeOf(declared: string, fileName: string): CaptureType | undefined {
  if ((CAPTURE_TYPES as readonly string[]).includes(declared)) return declared as CaptureType;
  if (declared && declared !== 'application/octet-stream') return undefined;
  const extension = fileName.toLowerCase().split('.').pop();
  return extension === 'jpg' || extension === 'jpeg' ? 'image/jpeg' : extension === 'png' ? 'image/png' : extension === 'pdf' ? 'application/pdf' : undefined;
}
