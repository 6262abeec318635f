import { Hono, type Context } from 'hono';
import { Tag } from '../dicom/tags.js';
import { assertUid } from '../dicom/uid.js';
import { HttpError } from '../errors.js';
import { FailureReason, IngestBatch, type InstanceOutcome } from '../ingest/ingest.js';
import type { Env, Services } from '../context.js';
import { MultipartError, parseMultipartRelated, readMultipart } from './multipart.js';
import { dicomwebRoot } from './urls.js';

/** STOW-RS (PS3.18 10.5): every part is judged on its own; a bad one never stops its neighbours. */
export function stowRouter(services: Services) {
  const router = new Hono<Env>();
  const store = async (c: Context<Env>) => {
    const study = c.req.param('study');
    const studyUid = study === undefined ? undefined : assertUid('StudyInstanceUID in the URL', study);
    const { boundary, type } = multipartOf(c.req.header('content-type'));
    if (type && type.toLowerCase() !== 'application/dicom') {
      throw new HttpError(415, 'unsupported-media-type', `this server stores application/dicom parts; "${type}" (metadata and bulk data) is not supported`);
    }
    const body = c.env?.incoming ?? (c.req.raw.body as unknown as AsyncIterable<Uint8Array> | null);
    if (!body) throw new HttpError(400, 'bad-request', 'the request has no body');

    const { config } = services;
    const batch = new IngestBatch(services.ingest, studyUid);
    let parts = 0;
    try {
      for await (const part of readMultipart(body, boundary, { maxPartBytes: config.maxRequestBytes, maxTotalBytes: config.maxRequestBytes })) {
        parts++;
        const partType = (part.contentType ?? 'application/dicom').split(';')[0]!.trim().toLowerCase();
        if (partType !== 'application/dicom') {
          batch.reject(FailureReason.CannotUnderstand, `part ${parts} is ${partType}, not application/dicom`);
          continue;
        }
        await batch.add(part.body);
      }
    } catch (e: unknown) {
      await batch.abort();
      if (e instanceof MultipartError) {
        if (e.code === 'too-large') throw new HttpError(413, 'too-large', `the request is larger than the ${config.maxRequestBytes}-byte limit (PACS_MAX_REQUEST_BYTES); nothing was stored, send fewer instances per request`);
        throw new HttpError(400, 'bad-multipart', `${e.message}; nothing was stored`);
      }
      throw e;
    }
    if (parts === 0) throw new HttpError(400, 'bad-request', 'the multipart body holds no parts');
    const outcomes = await batch.commit();
    const root = dicomwebRoot(c, config.publicUrl);
    const stored = outcomes.filter((o) => o.status !== 'failed');
    const status = stored.length === outcomes.length ? 200 : stored.length > 0 ? 202 : 409;
    services.log.info({ stored: stored.length, failed: outcomes.length - stored.length }, 'stow');
    return c.body(JSON.stringify(stowResponse(outcomes, root, studyUid)), status, { 'Content-Type': 'application/dicom+json' });
  };
  router.post('/studies', store);
  router.post('/studies/:study', store);
  return router;
}

function multipartOf(contentType: string | undefined) {
  try {
    return parseMultipartRelated(contentType ?? '');
  } catch (e) {
    if (e instanceof MultipartError) throw new HttpError(415, 'unsupported-media-type', e.message);
    throw e;
  }
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
