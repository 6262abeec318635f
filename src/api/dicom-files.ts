import { createReadStream } from 'node:fs';
import { Hono } from 'hono';
import { z } from 'zod';
import { allow, callerOf } from '../auth/middleware.js';
import type { Env, Services } from '../context.js';
import { correctFile, CorrectionRefused, type Correction } from '../dicom/correct.js';
import { DicomParseError } from '../dicom/parse.js';
import { lookupTag, Tag } from '../dicom/tags.js';
import { BadRequest } from '../errors.js';
import { FailureReason, IngestBatch, type Receipt } from '../ingest/ingest.js';
import { readInstanceHeader } from '../ingest/read-header.js';
import { TooLarge, type Spooled } from '../ingest/spool.js';
import { answerForm, date, formResponse, MAX_FORM_FILES, parseForm, text, withUpload } from './form-upload.js';
import type { Operation } from './openapi.js';

/** The values of the EMR's order a person may set on files that came with others (a CD from another hospital). */
export const correctionsForm = z.strictObject({
  patient_id: text(64, 'patient_id').optional().describe('PatientID, as the clinic knows the patient'),
  patient_name: text(64, 'patient_name').optional().describe('PatientName as Family^Given'),
  patient_birth_date: date('patient_birth_date').optional(),
  patient_sex: z.enum(['M', 'F', 'O']).optional(),
  accession_number: text(16, 'accession_number').optional().describe('AccessionNumber of the order'),
  study_date: date('study_date').optional(),
  reason: text(500, 'reason').optional().describe('why the values are corrected (3 to 500 characters); required with any of them, kept in the audit trail'),
});
const TAGS: Record<Exclude<keyof z.infer<typeof correctionsForm>, 'reason'>, string> = {
  patient_id: Tag.PatientID,
  patient_name: Tag.PatientName,
  patient_birth_date: Tag.PatientBirthDate,
  patient_sex: Tag.PatientSex,
  accession_number: Tag.AccessionNumber,
  study_date: Tag.StudyDate,
};
const MIN_REASON = 3;

export const dicomFilesResponse = formResponse({
  study_uid: z.string().nullable(),
  corrected: z.array(z.string()).describe('the attributes whose values were set, their old values kept in the Original Attributes Sequence'),
});

export const dicomFilesOperations: Operation[] = [
  {
    method: 'post', path: '/uploads', id: 'uploadDicomFiles', tag: 'Store', access: 'upload',
    form: { fields: correctionsForm, files: `DICOM files (Part 10) as form-data parts with a filename (at most ${MAX_FORM_FILES}).` },
    summary: 'Store DICOM files, matched to the EMR\'s order',
    description: 'The values given are set in every file; the values they replace are kept in a new item of the file\'s Original Attributes Sequence (0400,0561) with when, by whom and why (CORRECT). UIDs stay; pixel data is not touched. A file already holding every value is stored as sent.',
    responses: { 200: { description: 'every file stored', json: dicomFilesResponse }, 202: { description: 'some files refused, each with the reason', json: dicomFilesResponse } },
  },
];

/**
 * DICOM files from a form (issue 15: the upload page, or a script), with the EMR's order's values set on them before
 * they are stored: the seed workflow of reading a CD's tags, showing them, and letting the person correct them.
 */
export function dicomFilesApi(services: Services) {
  const router = new Hono<Env>();

  router.post('/uploads', allow('upload'), async (c) =>
    withUpload(c, services, async (fields, files) => {
      const { corrections, reason } = correctionsOf(fields);
      if (reason) c.set('auditReason', reason);
      const now = new Date();
      const batch = new IngestBatch(services.ingest);
      const received: Array<{ file: string; corrected: string[]; receipt: Receipt }> = [];
      for (const file of files) {
        await file.spooled.written;
        received.push({ file: file.name, ...(await addCorrected(batch, file.spooled, { corrections, modifiedBy: callerOf(c), now, maxInstanceBytes: services.config.maxInstanceBytes })) });
      }
      await batch.commit();
      const outcomes = await Promise.all(received.map((r) => r.receipt.outcome));

      c.set('auditStudyUids', [...new Set(outcomes.flatMap((o) => (o.status === 'failed' ? [] : [o.studyUid])))]);
      return answerForm(c, services, 'form', received.map((r, i) => ({ file: r.file, outcome: outcomes[i]! })), (o, i) => ({
        study_uid: o.studyUid ?? null,
        corrected: o.status === 'failed' ? [] : received[i]!.corrected,
      }));
    }),
  );

  return router;
}

/** The corrections a form asks for, and why; a value given without a reason is refused, nothing stored. */
export function correctionsOf(fields: Record<string, string>): { corrections: Correction[]; reason?: string } {
  const form = parseForm(correctionsForm, fields);
  const corrections: Correction[] = Object.entries(TAGS).flatMap(([field, tag]) => {
    const value = form[field as keyof typeof TAGS];
    return value === undefined ? [] : [{ tag, value }];
  });
  if (corrections.length > 0 && (form.reason ?? '').length < MIN_REASON) {
    throw new BadRequest(`say why the values are corrected in the reason field (${MIN_REASON} to 500 characters, kept in the audit trail); nothing was stored`);
  }
  return { corrections, reason: form.reason };
}

/** The values to set on a file, who sets them and when. */
export type Correcting = { corrections: Correction[]; modifiedBy: string; now: Date; maxInstanceBytes: number };

/**
 * A file received whole, added to the batch with the corrections set on it (the old values kept in it), or as it is
 * when there are none or it holds them already; refused with the reason when it cannot be corrected.
 */
export async function addCorrected(
  batch: IngestBatch,
  file: Pick<Spooled, 'path' | 'size' | 'head' | 'written'>,
  o: Correcting,
): Promise<{ corrected: string[]; receipt: Receipt }> {
  const asSent = async () => ({ corrected: [], receipt: await batch.add(createReadStream(file.path)) });
  if (o.corrections.length === 0) return asSent();
  try {
    const corrected = correctFile(await readInstanceHeader({ ...file, sha256: '', synced: file.written }, o.maxInstanceBytes), o.corrections, o.modifiedBy, o.now);
    if (!corrected) return asSent();
    const body = (async function* () {
      yield corrected.head;
      yield* createReadStream(file.path, { start: corrected.restFrom });
    })();
    return { corrected: corrected.changed.map((tag) => lookupTag(tag)?.keyword ?? tag), receipt: await batch.add(body) };
  } catch (e) {
    if (e instanceof CorrectionRefused) return { corrected: [], receipt: batch.reject(FailureReason.CannotUnderstand, `${e.message}; nothing of it was stored`) };
    if (e instanceof DicomParseError || e instanceof TooLarge) return { corrected: [], receipt: batch.reject(FailureReason.CannotUnderstand, `not a DICOM file that can be read: ${e.message}`) };
    throw e;
  }
}
