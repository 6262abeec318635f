import fs from 'node:fs/promises';
import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { allow, callerOf } from '../auth/middleware.js';
import { CAPTURE_TYPES, captureInstance, CaptureRefused, dicomDate, dicomTime, uidMaker, type CaptureContext, type CaptureType } from '../capture/capture.js';
import type { Env, Services } from '../context.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { parseMediaType } from '../dicomweb/media-type.js';
import { MultipartError, readMultipart } from '../dicomweb/multipart.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { refuseOnLowDisk, requestTooLarge, uploadBodyError } from '../dicomweb/stow.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import { FailureReason, IngestBatch, type InstanceOutcome } from '../ingest/ingest.js';
import { discard, formatBytes, spool, type Spooled } from '../ingest/spool.js';
import { UploadTally } from '../ingest/upload-log.js';
import type { Operation } from './openapi.js';
import { studyQuery } from './studies.js';

/** Files one request may carry: a session's photos, not an archive (that is STOW's or the import's job). */
const MAX_FILES = 100;
/** A form field is a name or a date, never a document. */
const MAX_FIELD_BYTES = 1024;

/* Text as DICOM keeps it: no backslash (the value separator) and no control characters. */
const text = (max: number, what: string) =>
  z
    .string()
    .trim()
    .max(max, `${what} is at most ${max} characters`)
    .regex(/^[^\\\x00-\x1f\x7f]*$/, `${what} may not hold a backslash or control characters`);
const date = (what: string) =>
  z
    .string()
    .trim()
    .regex(/^\d{4}-?\d{2}-?\d{2}$/, `${what} is a date such as 2026-12-06`)
    .transform((d) => d.replaceAll('-', ''))
    .refine((d) => {
      const parsed = new Date(`${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}T00:00:00Z`);
      return !Number.isNaN(parsed.getTime()) && parsed.toISOString().slice(0, 10).replaceAll('-', '') === d;
    }, `${what} is not a calendar date`);
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

export const captureResponse = z.object({
  study_uid: z.string(),
  stored: z.number(),
  already_stored: z.number(),
  refused: z.number(),
  files: z.array(
    z.object({
      file: z.string(),
      status: z.enum(['stored', 'already-stored', 'refused']),
      sop_instance_uid: z.string().nullable(),
      series_uid: z.string().nullable(),
      sop_class_uid: z.string().nullable(),
      reason: z.string().nullable(),
    }),
  ),
});

const FILES = `JPEG, PNG or PDF files as form-data parts with a filename (at most ${MAX_FILES}); each becomes one instance.`;
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

type ReceivedFile = { name: string; type: CaptureType | undefined; declared: string; spooled: Spooled };

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
        if (!file.type) throw new CaptureRefused(`${file.declared || 'an unnamed type'} is not a photo or a document this server takes: send JPEG, PNG or PDF`);
        const series = seriesFor(file.type === 'application/pdf' ? 'document' : 'photo');
        const instanceNumber = (counters.get(series.uid) ?? 0) + 1;
        counters.set(series.uid, instanceNumber);
        await file.spooled.written;
        const bytes = await fs.readFile(file.spooled.path);
        const instance = await captureInstance(bytes, file.type, { ...base, series, instanceNumber, sopInstanceUid: newUid(), now });
        receipts.push({ file: file.name, outcome: (await batch.add(oneChunk(instance))).outcome });
      } catch (e) {
        if (!(e instanceof CaptureRefused)) throw e;
        receipts.push({ file: file.name, outcome: batch.reject(FailureReason.CannotUnderstand, e.message).outcome });
      }
    }
    await batch.commit();
    const outcomes = await Promise.all(receipts.map((r) => r.outcome));
    const { address, via } = c.var.client;
    const tally = new UploadTally('photos', callerOf(c), via ? `${address} via ${via}` : address);
    for (const outcome of outcomes) tally.add(outcome);
    await tally.record(services.catalog, c.var.log);
    const answer: z.infer<typeof captureResponse> = {
      study_uid: study.uid,
      stored: outcomes.filter((o) => o.status === 'stored').length,
      already_stored: outcomes.filter((o) => o.status !== 'stored' && o.status !== 'failed').length,
      refused: outcomes.filter((o) => o.status === 'failed').length,
      files: outcomes.map((o, i) => ({
        file: receipts[i]!.file,
        status: o.status === 'failed' ? 'refused' : o.status === 'stored' ? 'stored' : 'already-stored',
        sop_instance_uid: o.status === 'failed' ? null : o.sopInstanceUid,
        series_uid: o.status === 'failed' ? null : o.seriesUid,
        sop_class_uid: o.status === 'failed' ? null : o.sopClassUid,
        reason: o.status === 'failed' ? o.reason : null,
      })),
    };
    c.set('auditStudyUids', [study.uid]);
    const status = answer.refused === 0 ? 200 : answer.refused < outcomes.length ? 202 : 400;
    return c.json(answer, status);
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

/** The form's fields and its files (spooled to disk as they arrive), handed to `work`; the spool is gone after it. */
async function withUpload(c: Context<Env>, services: Services, work: (fields: Record<string, string>, files: ReceivedFile[]) => Promise<Response>): Promise<Response> {
  const { config } = services;
  const media = parseMediaType(c.req.header('content-type') ?? '');
  if (media?.mediaType !== 'multipart/form-data' || !media.params.boundary) {
    throw new HttpError(415, 'unsupported-media-type', 'send the files as multipart/form-data (an HTML form with enctype="multipart/form-data", or curl -F file=@photo.jpg)');
  }
  const declared = Number(c.req.header('content-length'));
  if (declared > config.maxRequestBytes) throw requestTooLarge(config.maxRequestBytes, declared);
  await refuseOnLowDisk(config.storageDir, config.minFreeBytes, declared);
  const body = c.env?.incoming ?? (c.req.raw.body as unknown as AsyncIterable<Uint8Array> | null);
  if (!body) throw new BadRequest('the request has no body');
  const fields: Record<string, string> = {};
  const files: ReceivedFile[] = [];
  try {
    for await (const part of readMultipart(body, media.params.boundary, { maxPartBytes: config.maxInstanceBytes, maxTotalBytes: config.maxRequestBytes, maxParts: MAX_FILES + 50 })) {
      const disposition = parseMediaType(`form-data/x; ${(part.headers['content-disposition'] ?? '').replace(/^\s*form-data\s*;?/i, '')}`)?.params ?? {};
      const name = disposition.name ?? '';
      if (disposition.filename !== undefined) {
        if (files.length === MAX_FILES) throw new BadRequest(`at most ${MAX_FILES} files a request; nothing was stored`);
        const declaredType = (part.contentType ?? '').split(';')[0]!.trim().toLowerCase();
        const spooled = await spool(part.body, services.ingest.spoolDir, config.maxInstanceBytes).catch((e: unknown) => {
          if (e instanceof MultipartError && e.code === 'part-too-large') {
            throw new HttpError(413, 'too-large', `${disposition.filename} is larger than the ${formatBytes(config.maxInstanceBytes)} limit (PACS_MAX_INSTANCE_BYTES); nothing was stored`);
          }
          throw e;
        });
        files.push({ name: disposition.filename, declared: declaredType, type: captureTypeOf(declaredType, disposition.filename), spooled });
      } else {
        let value = '';
        for await (const chunk of part.body) {
          value += Buffer.from(chunk).toString('utf8');
          if (value.length > MAX_FIELD_BYTES) throw new BadRequest(`the field ${name} is longer than ${MAX_FIELD_BYTES} characters; nothing was stored`);
        }
        if (Object.hasOwn(fields, name)) throw new BadRequest(`the field ${name} is given twice; nothing was stored`);
        fields[name] = value;
      }
    }
    if (files.length === 0) throw new BadRequest('the form holds no file: add JPEG, PNG or PDF files as parts with a filename');
    return await work(fields, files);
  } catch (e) {
    throw uploadBodyError(e, config);
  } finally {
    await Promise.all(files.map((f) => discard(f.spooled)));
  }
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

function parseForm<T extends z.ZodObject>(schema: T, fields: Record<string, string>): z.infer<T> {
  // An empty field is one the form left blank.
  const given = Object.fromEntries(Object.entries(fields).filter(([, v]) => v.trim() !== ''));
  const parsed = schema.safeParse(given);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') return `unknown field ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    const field = String(i.path[0] ?? 'form');
    return i.message.startsWith(field) ? i.message : `${field}: ${i.message}`;
  });
  throw new BadRequest(`${problems.join('; ')}; nothing was stored`);
}
