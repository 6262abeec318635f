import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import type { LoggedUpload } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { isValidUid } from '../dicom/uid.js';
import type { Operation } from './openapi.js';
import { parseQuery } from './params.js';

const DEFAULT_LIMIT = 100;
const MAX_LIMIT = 1000;

const isoTime = (name: string) =>
  z
    .string()
    .refine((raw) => !Number.isNaN(Date.parse(raw)), `${name} must be an ISO 8601 time such as 2026-11-24T08:00:00Z`)
    .transform((raw) => Date.parse(raw));
const count = (name: string, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `${name} must be a whole number`)
    .transform(Number)
    .refine((n) => n <= max, `${name} is at most ${max}`);

/** What the upload log is searched by. Unknown parameters are refused, not ignored: a misspelt filter would list all. */
export const uploadsQuery = z.strictObject({
  study: z.string().refine(isValidUid, 'study must be a Study Instance UID').optional().describe('uploads that stored into this Study Instance UID'),
  patient_id: z.string().min(1).max(64).optional().describe('uploads that stored into this patient\'s studies'),
  credential: z.string().min(1).max(256).optional().describe('`key:<id>`, `user:<login>`, `ae:<AE title>`, `cli:<user>`'),
  since: isoTime('since').optional().describe('ISO 8601 time, inclusive'),
  until: isoTime('until').optional().describe('ISO 8601 time, inclusive'),
  limit: count('limit', MAX_LIMIT).optional().describe(`uploads in a page (${DEFAULT_LIMIT}; at most ${MAX_LIMIT})`),
  offset: count('offset', Number.MAX_SAFE_INTEGER).optional().describe('uploads to skip'),
});

export const uploadResponse = z.object({
  id: z.string(),
  at: z.string(),
  door: z.enum(['stow', 'import', 'dicom', 'photos', 'form']),
  credential: z.string(),
  ip: z.string().nullable(),
  stored: z.number(),
  already_stored: z.number(),
  refused: z.number(),
  refusals: z.array(z.object({ sop_instance_uid: z.string().nullable(), failure_reason: z.number(), reason: z.string() })).describe('the first 100'),
  studies: z.array(z.string()),
  patient_ids: z.array(z.string()),
});

export const uploadsOperations: Operation[] = [
  {
    method: 'get', path: '/uploads', id: 'uploadLog', tag: 'Store', access: 'admin', query: uploadsQuery,
    summary: 'The upload log, newest first: every STOW-RS request, import and DICOM association that sent instances',
    responses: { 200: { description: 'a page of uploads', json: z.array(uploadResponse) } },
  },
];

/**
 * The upload log (issue 15): every upload, whatever its door (STOW-RS, the command line's import, the DICOM network),
 * who made it and from where, and what became of its instances; newest first. Admin only.
 */
export function uploadsApi({ uploads: log }: Services) {
  const router = new Hono<Env>();
  router.get('/uploads', allow('admin'), async (c) => {
    const q = parseQuery(uploadsQuery, c.req.query());
    const uploads = await log.uploads({
      studyUid: q.study,
      patientId: q.patient_id,
      credential: q.credential,
      since: q.since,
      until: q.until,
      limit: q.limit ?? DEFAULT_LIMIT,
      offset: q.offset ?? 0,
    });
    return c.json(uploads.map(uploadJson));
  });

  return router;
}

function uploadJson(u: LoggedUpload): z.infer<typeof uploadResponse> {
  return {
    id: u.id,
    at: new Date(u.at).toISOString(),
    door: u.door,
    credential: u.credential,
    ip: u.ip,
    stored: u.stored,
    already_stored: u.present,
    refused: u.refused,
    refusals: u.refusals.map((r) => ({ sop_instance_uid: r.sopInstanceUid, failure_reason: r.failureReason, reason: r.reason })),
    studies: u.studyUids,
    patient_ids: u.patientIds,
  };
}
