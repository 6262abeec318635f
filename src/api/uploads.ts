import { Hono } from 'hono';
import { z } from 'zod';
import { allow } from '../auth/middleware.js';
import type { LoggedUpload } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { isValidUid } from '../dicom/uid.js';
import { BadRequest } from '../errors.js';

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
const search = z.strictObject({
  study: z.string().refine(isValidUid, 'study must be a Study Instance UID').optional(),
  patient_id: z.string().min(1).max(64).optional(),
  credential: z.string().min(1).max(256).optional(),
  since: isoTime('since').optional(),
  until: isoTime('until').optional(),
  limit: count('limit', MAX_LIMIT).optional(),
  offset: count('offset', Number.MAX_SAFE_INTEGER).optional(),
});

/**
 * The upload log (issue 15): every upload, whatever its door (STOW-RS, the command line's import, the DICOM network),
 * who made it and from where, and what became of its instances; newest first. Admin only.
 */
export function uploadsApi({ catalog }: Services) {
  const router = new Hono<Env>();
  router.use('/uploads', allow('admin'));

  router.get('/uploads', async (c) => {
    const parsed = search.safeParse(c.req.query());
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const name = issue.code === 'unrecognized_keys' ? issue.keys.join(', ') : issue.path.join('.');
      throw new BadRequest(issue.code === 'unrecognized_keys' ? `unknown parameter ${name}: study, patient_id, credential, since, until, limit, offset` : issue.message);
    }
    const q = parsed.data;
    const uploads = await catalog.uploads({
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

function uploadJson(u: LoggedUpload) {
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
