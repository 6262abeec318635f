import { type Context } from 'hono';
import { z } from 'zod';
import { callerOf, clientIpOf } from '../auth/middleware.js';
import type { UploadDoor } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { parseMediaType } from '../dicomweb/media-type.js';
import { MultipartError, readMultipart } from '../dicomweb/multipart.js';
import { refuseOnLowDisk, requestTooLarge, uploadBodyError } from '../dicomweb/stow.js';
import { BadRequest, HttpError } from '../errors.js';
import type { InstanceOutcome } from '../ingest/ingest.js';
import { discard, formatBytes, spool, type Spooled } from '../ingest/spool.js';
import { UploadTally } from '../ingest/upload-log.js';

/** A file of a form, spooled to disk as it arrived: its name, the type its part declared, and its bytes. */
export type ReceivedFile = { name: string; declared: string; spooled: Spooled };

/** Files one request may carry: a session's photos, not an archive (that is STOW's or the import's job). */
export const MAX_FORM_FILES = 100;
/** A form field is a name or a date, never a document. */
const MAX_FIELD_BYTES = 1024;

/* Text as DICOM keeps it: no backslash (the value separator) and no control characters. */
export const text = (max: number, what: string) =>
  z
    .string()
    .trim()
    .max(max, `${what} is at most ${max} characters`)
    .regex(/^[^\\\x00-\x1f\x7f]*$/, `${what} may not hold a backslash or control characters`);
export const date = (what: string) =>
  z
    .string()
    .trim()
    .regex(/^\d{4}-?\d{2}-?\d{2}$/, `${what} is a date such as 2026-12-06`)
    .transform((d) => d.replaceAll('-', ''))
    .refine((d) => {
      const parsed = new Date(`${d.slice(0, 4)}-${d.slice(4, 6)}-${d.slice(6)}T00:00:00Z`);
      return !Number.isNaN(parsed.getTime()) && parsed.toISOString().slice(0, 10).replaceAll('-', '') === d;
    }, `${what} is not a calendar date`);
/** The form's fields and its files (spooled to disk as they arrive), handed to `work`; the spool is gone after it. */
export async function withUpload(c: Context<Env>, services: Services, work: (fields: Record<string, string>, files: ReceivedFile[]) => Promise<Response>): Promise<Response> {
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
    for await (const part of readMultipart(body, media.params.boundary, { maxPartBytes: config.maxInstanceBytes, maxTotalBytes: config.maxRequestBytes, maxParts: MAX_FORM_FILES + 50 })) {
      const disposition = parseMediaType(`form-data/x; ${(part.headers['content-disposition'] ?? '').replace(/^\s*form-data\s*;?/i, '')}`)?.params ?? {};
      const name = disposition.name ?? '';
      if (disposition.filename !== undefined) {
        if (files.length === MAX_FORM_FILES) throw new BadRequest(`at most ${MAX_FORM_FILES} files a request; nothing was stored`);
        const declaredType = (part.contentType ?? '').split(';')[0]!.trim().toLowerCase();
        const spooled = await spool(part.body, services.ingest.spoolDir, config.maxInstanceBytes).catch((e: unknown) => {
          if (e instanceof MultipartError && e.code === 'part-too-large') {
            throw new HttpError(413, 'too-large', `${disposition.filename} is larger than the ${formatBytes(config.maxInstanceBytes)} limit (PACS_MAX_INSTANCE_BYTES); nothing was stored`);
          }
          throw e;
        });
        files.push({ name: disposition.filename, declared: declaredType, spooled });
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
    if (files.length === 0) throw new BadRequest('the form holds no file: add the files as parts with a filename (curl -F file=@name)');
    return await work(fields, files);
  } catch (e) {
    throw uploadBodyError(e, config);
  } finally {
    await Promise.all(files.map((f) => discard(f.spooled)));
  }
}

export function parseForm<T extends z.ZodObject>(schema: T, fields: Record<string, string>): z.infer<T> {
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

/** What became of a form's files: counts, and each file's status with its UIDs or its reason, and what `fields` add. */
export function formResponse<T extends z.ZodRawShape>(fields: T) {
  return z.object({
    stored: z.number(),
    already_stored: z.number(),
    refused: z.number(),
    files: z.array(
      z.object({
        file: z.string(),
        status: z.enum(['stored', 'already-stored', 'refused']),
        sop_instance_uid: z.string().nullable(),
        reason: z.string().nullable(),
        ...fields,
      }),
    ),
  });
}

/**
 * Records the upload in the log under `door`, and answers it: 200 when every file was stored, 202 when some were
 * refused, 400 when all were; `more` adds a file's own fields, `top` the answer's.
 */
export async function answerForm<E extends object>(
  c: Context<Env>,
  services: Services,
  door: UploadDoor,
  received: Array<{ file: string; outcome: InstanceOutcome }>,
  more: (outcome: InstanceOutcome, i: number) => E,
  top: object = {},
): Promise<Response> {
  recordUpload(c, services, door, received.map((r) => r.outcome));
  const refused = received.filter((r) => r.outcome.status === 'failed').length;
  const answer = {
    ...top,
    stored: received.filter((r) => r.outcome.status === 'stored').length,
    already_stored: received.filter((r) => r.outcome.status === 'duplicate').length,
    refused,
    files: received.map(({ file, outcome }, i) => ({ ...fileAnswer(file, outcome), ...more(outcome, i) })),
  };
  return c.json(answer, refused === 0 ? 200 : refused < received.length ? 202 : 400);
}

/** An upload in the upload log, under the caller and where it came from. */
export function recordUpload(c: Context<Env>, services: Services, door: UploadDoor, outcomes: InstanceOutcome[]): void {
  services.uploads.add(new UploadTally(door, callerOf(c), clientIpOf(c), outcomes));
}

/** What became of one file, as every upload route answers it. */
export function fileAnswer(file: string, o: InstanceOutcome) {
  return {
    file,
    status: o.status === 'failed' ? ('refused' as const) : o.status === 'stored' ? ('stored' as const) : ('already-stored' as const),
    sop_instance_uid: o.sopInstanceUid ?? null,
    reason: o.status === 'failed' ? o.reason : null,
  };
}
