import { Hono, type Context } from 'hono';
import { Tag } from '../dicom/tags.js';
import { DiskFull, HttpError } from '../errors.js';
import { differingMetaUidsNote, FailureReason, IngestBatch, type InstanceOutcome, type Receipt } from '../ingest/ingest.js';
import { formatBytes, TooLarge } from '../ingest/spool.js';
import { diskSpace } from '../storage/disk-space.js';
import type { Env, Services } from '../context.js';
import { UploadTally } from '../ingest/upload-log.js';
import { callerOf, clientIpOf } from '../auth/middleware.js';
import { MultipartError, parseMultipartRelated, readMultipart } from './multipart.js';
import { pathUids } from './path-uids.js';
import { dicomwebRoot } from './urls.js';

/** Errors of a Node request body whose client went away (node:http 'aborted', a stream closed before its end). */
const CONNECTION_LOST = new Set(['ECONNRESET', 'ERR_STREAM_PREMATURE_CLOSE']);

/** STOW-RS (PS3.18 10.5): every part is judged on its own; a bad one never stops its neighbours. */
export function stowRouter(services: Services) {
  const router = new Hono<Env>();
  const store = async (c: Context<Env>) => {
    const { studyUid } = pathUids(c);
    const { boundary, type } = multipartOf(c.req.header('content-type'));
    if (type && type.toLowerCase() !== 'application/dicom') {
      throw new HttpError(415, 'unsupported-media-type', `this server stores application/dicom parts; "${type}" (metadata and bulk data) is not supported`);
    }
    const { config } = services;
    // A declared length over the limit is refused before a byte of the body is read; other bodies are counted.
    const declared = Number(c.req.header('content-length'));
    if (declared > config.maxRequestBytes) throw requestTooLarge(config.maxRequestBytes, declared);
    await refuseOnLowDisk(config.storageDir, config.minFreeBytes, declared);
    const body = c.env?.incoming ?? (c.req.raw.body as unknown as AsyncIterable<Uint8Array> | null);
    if (!body) throw new HttpError(400, 'bad-request', 'the request has no body');

    const batch = new IngestBatch(services.ingest, studyUid);
    const receipts: Receipt[] = [];
    let parts = 0;
    try {
      for await (const part of dicomParts(body, boundary, { ...config, maxTotalBytes: config.maxRequestBytes })) {
        parts++;
        receipts.push('refusal' in part ? batch.reject(FailureReason.CannotUnderstand, part.refusal) : await batch.add(part.bytes));
      }
    } catch (e: unknown) {
      await batch.abort();
      throw uploadBodyError(e, config);
    }
    if (parts === 0) throw new HttpError(400, 'bad-request', 'the multipart body holds no parts');
    await batch.commit();
    const outcomes = await Promise.all(receipts.map((r) => r.outcome));
    const root = dicomwebRoot(c, config.publicUrl);
    const stored = outcomes.filter((o) => o.status !== 'failed');
    c.set('auditStudyUids', [...new Set(stored.map((o) => o.studyUid))]);
    const status = stored.length === outcomes.length ? 200 : stored.length > 0 ? 202 : 409;
    services.log.info({ stored: stored.length, failed: outcomes.length - stored.length }, 'stow');
    services.uploads.add(new UploadTally('stow', callerOf(c), clientIpOf(c), outcomes));
    logRefusals(services, outcomes);
    const executables = stored.filter((o) => o.executablePreamble);
    if (executables.length) flagExecutables(c, services, executables, status);
    const differing = stored.filter((o) => o.differingMetaUids);
    if (differing.length) {
      const first = differing[0]!;
      addWarning(c, `instance ${first.sopInstanceUid}${andMore(differing)}: ${differingMetaUidsNote({ ...first, differingMetaUids: first.differingMetaUids! })}`);
    }
    return c.body(JSON.stringify(stowResponse(outcomes, root, studyUid)), status, { 'Content-Type': 'application/dicom+json' });
  };
  router.post('/studies', store);
  router.post('/studies/:study', store);
  return router;
}

/** What a multipart upload's body failing means to its sender; nothing of the request was stored. */
export function uploadBodyError(e: unknown, limits: { maxRequestBytes: number; maxPartsPerRequest: number }): unknown {
  if (e instanceof MultipartError) {
    if (e.code === 'too-large') return requestTooLarge(limits.maxRequestBytes);
    if (e.code === 'too-many-parts') {
      // Refused whole, as soon as the part past the limit begins: the work and the answer stay bounded.
      return new HttpError(413, 'too-many-parts', `the request holds more than ${limits.maxPartsPerRequest} parts (PACS_MAX_PARTS_PER_REQUEST); nothing was stored, send fewer per request`);
    }
    return new HttpError(400, 'bad-multipart', `${e.message}; nothing was stored`);
  }
  // The client hung up mid-upload: its mistake or its network's, not a server failure to report as one.
  if (CONNECTION_LOST.has((e as NodeJS.ErrnoException).code ?? '')) {
    return new HttpError(400, 'upload-interrupted', 'the connection closed before the whole body arrived; nothing was stored, send it again');
  }
  return e;
}

/**
 * The DICOM files of a multipart/related body (a STOW-RS request, a bundle of resumable uploads), part by part: each
 * part's bytes, or why it is refused (another type than application/dicom); a bad part never stops its neighbours.
 */
export async function* dicomParts(
  body: AsyncIterable<Uint8Array>,
  boundary: string,
  limits: { maxInstanceBytes: number; maxTotalBytes: number; maxPartsPerRequest: number },
): AsyncGenerator<{ bytes: AsyncIterable<Uint8Array> } | { refusal: string }> {
  let n = 0;
  for await (const part of readMultipart(body, boundary, { maxPartBytes: limits.maxInstanceBytes, maxTotalBytes: limits.maxTotalBytes, maxParts: limits.maxPartsPerRequest })) {
    n++;
    const type = (part.contentType ?? 'application/dicom').split(';')[0]!.trim().toLowerCase();
    yield type === 'application/dicom' ? { bytes: instanceBytes(part.body, limits.maxInstanceBytes) } : { refusal: `part ${n} is ${type}, not application/dicom` };
  }
}

/**
 * A part's bytes as ingest reads them: past PACS_MAX_INSTANCE_BYTES the reader fails that part alone and skips the rest
 * of it unread; said in ingest's words, the instance is refused with 0xA700 while its neighbours go on.
 */
async function* instanceBytes(body: AsyncIterable<Uint8Array>, limit: number): AsyncGenerator<Uint8Array> {
  try {
    yield* body;
  } catch (e) {
    throw e instanceof MultipartError && e.code === 'part-too-large' ? new TooLarge(limit) : e;
  }
}

/**
 * Uploads stop before they start while the data folder's disk is below its floor (or this body's declared length
 * would take it there): the last free space is kept for the index, the spool of uploads under way and the logs.
 */
export async function refuseOnLowDisk(storageDir: string, minFreeBytes: number, declared: number): Promise<void> {
  const space = await diskSpace(storageDir, minFreeBytes);
  const after = space.freeBytes - (Number.isFinite(declared) ? declared : 0);
  if (!space.low && (minFreeBytes === 0 || after >= minFreeBytes)) return;
  const free = `it has ${formatBytes(space.freeBytes)} free`;
  const what = space.low ? `${free}, less than` : `${free}, and this ${formatBytes(declared)} request would leave less than`;
  throw new DiskFull(`the server's disk is nearly full: ${what} the ${formatBytes(minFreeBytes)} kept free (PACS_MIN_FREE_BYTES)`);
}

/**
 * Instances whose preamble holds an executable header (dicom/preamble.ts) are kept as sent, the checksum vouches
 * for those bytes, but the audit trail records each, and the client is told in a Warning header (PS3.18 tells clients of such conditions in one; RFC 9111 5.5 retired it for caches only).
 */
function flagExecutables(c: Context<Env>, services: Services, instances: Exclude<InstanceOutcome, { status: 'failed' }>[], status: number): void {
  for (const o of instances) {
    services.auth.audit.record({
      at: Date.now(),
      credential: callerOf(c),
      ip: clientIpOf(c),
      method: c.req.method,
      path: c.req.path,
      query: `alert=executable-preamble&format=${encodeURIComponent(o.executablePreamble!)}`,
      studyUid: o.studyUid,
      seriesUid: o.seriesUid,
      sopUid: o.sopInstanceUid,
      status,
      requestId: c.var.requestId,
    });
  }
  const first = instances[0]!;
  addWarning(c, `instance ${first.sopInstanceUid}${andMore(instances)} holds an executable header in its preamble (${first.executablePreamble}); stored as sent, and audited`);
}

/**
 * Tells the client about instances stored as sent but worth its attention, in a Warning header (PS3.18 tells clients of such conditions in one; RFC 9111 5.5 retired it for caches only), one
 * value per kind. No FailureReason or WarningReason fits these (PS3.4 B.2.3: nothing was coerced, discarded or out of
 * its SOP Class), so the response body stays that of a plain success.
 */
function addWarning(c: Context<Env>, text: string): void {
  // A quoted-string in a header: printable ASCII, without the quote and backslash it would need escaped.
  c.header('Warning', `199 pacs-lite "${text.replace(/[^\x20-\x7e]|["\\]/g, '')}"`, { append: true });
}

/** Named first, the others counted: the header stays short however many instances share it. */
function andMore(instances: unknown[]): string {
  return instances.length > 1 ? ` and ${instances.length - 1} more` : '';
}

export function requestTooLarge(limit: number, declared?: number): HttpError {
  const size = declared === undefined ? 'larger' : `${formatBytes(declared)}, larger`;
  return new HttpError(413, 'too-large', `the request is ${size} than the ${formatBytes(limit)} limit (PACS_MAX_REQUEST_BYTES); nothing was stored, send fewer instances per request`);
}

export function multipartOf(contentType: string | undefined) {
  try {
    return parseMultipartRelated(contentType ?? '');
  } catch (e) {
    if (e instanceof MultipartError) throw new HttpError(415, 'unsupported-media-type', e.message);
    throw e;
  }
}

/** Refusals logged one by one, so the clinic's IT can tell a sender why; a request of thousands logs the first few. */
const REFUSALS_LOGGED = 20;

function logRefusals(services: Services, outcomes: InstanceOutcome[]): void {
  const failed = outcomes.filter((o) => o.status === 'failed');
  for (const o of failed.slice(0, REFUSALS_LOGGED)) {
    services.log.warn({ sopInstanceUid: o.sopInstanceUid, sopClassUid: o.sopClassUid, failureReason: `0x${o.failureReason.toString(16).toUpperCase().padStart(4, '0')}`, reason: o.reason }, 'instance refused');
  }
  if (failed.length > REFUSALS_LOGGED) services.log.warn({ more: failed.length - REFUSALS_LOGGED }, 'more instances refused in the same request');
}

/** PS3.18 Table 10.5.3-1: ReferencedSOPSequence for stored instances, FailedSOPSequence with reasons. */
function stowResponse(outcomes: InstanceOutcome[], root: string, studyUid: string | undefined) {
  const response: Record<string, unknown> = {};
  const studies = new Set(outcomes.flatMap((o) => (o.studyUid ? [o.studyUid] : [])));
  const onlyStudy = studyUid ?? (studies.size === 1 ? [...studies][0] : undefined);
  if (onlyStudy) response[Tag.RetrieveURL] = { vr: 'UR', Value: [`${root}/studies/${onlyStudy}`] };
  const uidItem = (o: InstanceOutcome) => ({
    ...(o.sopClassUid ? { [Tag.ReferencedSOPClassUID]: { vr: 'UI', Value: [o.sopClassUid] } } : {}),
    ...(o.sopInstanceUid ? { [Tag.ReferencedSOPInstanceUID]: { vr: 'UI', Value: [o.sopInstanceUid] } } : {}),
  });
  const failed = outcomes.filter((o) => o.status === 'failed');
  const stored = outcomes.filter((o) => o.status !== 'failed');
  if (failed.length) {
    response[Tag.FailedSOPSequence] = {
      vr: 'SQ',
      Value: failed.map((o) => ({
        ...uidItem(o),
        [Tag.FailureReason]: { vr: 'US', Value: [o.failureReason] },
        // ErrorComment (0000,0902): the reason in words, for the person reading the response.
        '00000902': { vr: 'LO', Value: [o.reason] },
      })),
    };
  }
  if (stored.length) {
    response[Tag.ReferencedSOPSequence] = {
      vr: 'SQ',
      Value: stored.map((o) => ({
        ...uidItem(o),
        [Tag.RetrieveURL]: { vr: 'UR', Value: [`${root}/studies/${o.studyUid}/series/${o.seriesUid}/instances/${o.sopInstanceUid}`] },
      })),
    };
  }
  return response;
}
