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
import { TooLarge } from '../ingest/spool.js';
import { answerForm, date, formResponse, MAX_FORM_FILES, parseForm, text, withUpload, type ReceivedFile } from './form-upload.js';
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
      const form = parseForm(correctionsForm, fields);
      const corrections: Correction[] = Object.entries(TAGS).flatMap(([field, tag]) => {
        const value = form[field as keyof typeof TAGS];
        return value === undefined ? [] : [{ tag, value }];
      });
      if (corrections.length > 0 && (form.reason ?? '').length < MIN_REASON) {
        throw new BadRequest(`say why the values are corrected in the reason field (${MIN_REASON} to 500 characters, kept in the audit trail); nothing was stored`);
      }
      if (form.reason) c.set('auditReason', form.reason);
      const now = new Date();
      const batch = new IngestBatch(services.ingest);
      const received: Array<{ file: string; corrected: string[]; receipt: Receipt }> = [];
      for (const file of files) received.push(await correctedReceipt(file));
      await batch.commit();
      const outcomes = await Promise.all(received.map((r) => r.receipt.outcome));

      c.set('auditStudyUids', [...new Set(outcomes.flatMap((o) => (o.status === 'failed' ? [] : [o.studyUid])))]);
      return answerForm(c, services, 'form', received.map((r, i) => ({ file: r.file, outcome: outcomes[i]! })), (o, i) => ({
        study_uid: o.studyUid ?? null,
        corrected: o.status === 'failed' ? [] : received[i]!.corrected,
      }));

      async function correctedReceipt(file: ReceivedFile) {
        await file.spooled.written;
        const sent = { file: file.name, corrected: [] as string[] };
        if (corrections.length === 0) return { ...sent, receipt: await batch.add(createReadStream(file.spooled.path)) };
        try {
          const corrected = correctFile(await readInstanceHeader(file.spooled, services.config.maxInstanceBytes), corrections, callerOf(c), now);
          if (!corrected) return { ...sent, receipt: await batch.add(createReadStream(file.spooled.path)) };
          const body = (async function* () {
            yield corrected.head;
            yield* createReadStream(file.spooled.path, { start: corrected.restFrom });
          })();
          return { file: file.name, corrected: corrected.changed.map((tag) => lookupTag(tag)?.keyword ?? tag), receipt: await batch.add(body) };
        } catch (e) {
          if (e instanceof CorrectionRefused) return { ...sent, receipt: batch.reject(FailureReason.CannotUnderstand, `${e.message}; nothing of it was stored`) };
          if (e instanceof DicomParseError || e instanceof TooLarge) return { ...sent, receipt: batch.reject(FailureReason.CannotUnderstand, `not a DICOM file that can be read: ${e.message}`) };
          throw e;
        }
      }
    }),
  );

  return router;
}
