import { Hono, type Context } from 'hono';
import { z } from 'zod';
import { IMAGE_KINDS, type ImageKind, type LinkedInstance } from '../auth/image-links.js';
import { allow } from '../auth/middleware.js';
import { permits } from '../auth/principal.js';
import type { StoredInstance } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { isValidUid } from '../dicom/uid.js';
import { instanceKeyParts } from '../storage/keys.js';
import { renderOptions, sendRendered } from '../dicomweb/rendered.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { streamOf } from '../dicomweb/wado.js';
import { BadRequest, Forbidden, NotFound } from '../errors.js';
import type { Operation } from './openapi.js';
import { countParam, exactParam, lifetimeParam, parseQuery } from './params.js';
import { studyQuery, studySummary, summary, viewerUrl } from './studies.js';
import { issuerOf } from '../auth/readable-studies.js';

/** A patient's history is a list for one screen, not a browse of the archive. */
const MAX_HISTORY = 100;
const DEFAULT_HISTORY = 20;
/* The query parameters of each route; values are checked further by params.ts, whose messages say what to send. */
const lifetime = { expires_in: z.string().optional().describe('seconds the links work; the default is PACS_VIEWER_TOKEN_TTL, the most PACS_VIEWER_TOKEN_MAX_TTL') };
export const studyImagesQuery = z.strictObject(lifetime);
export const imageUrlQuery = z.strictObject({ ...lifetime, kind: z.enum(IMAGE_KINDS).optional().describe('only this kind of link') });
export const signedImageQuery = z.strictObject({ sig: z.string().describe('the signature the link was made with') });
export const patientStudiesQuery = z.strictObject({
  ...lifetime,
  issuer: z.string().optional().describe('only the studies of this IssuerOfPatientID'),
  limit: z.string().optional().describe(`studies in a page (${DEFAULT_HISTORY}; at most ${MAX_HISTORY})`),
  offset: z.string().optional().describe('studies to skip'),
  viewer_links: z.enum(['true', 'false']).optional().describe('true: each study with a viewer link (needs the viewer-links right)'),
});

/* The answers' shapes, for the OpenAPI document; the handlers' answers must satisfy them. */
const nullableText = z.string().nullable();
const links = z.object({ thumbnail: z.string().optional(), rendered: z.string().optional(), dicom: z.string().optional() });
export const imageLinksResponse = z.object({
  sop_instance_uid: z.string(),
  series_uid: z.string(),
  study_uid: z.string(),
  instance_number: z.number().nullable(),
  frames: z.number(),
  size: z.number(),
  content_types: z.record(z.string(), z.string()),
  links,
  expires_at: z.string(),
});
export const studyImagesResponse = studySummary.extend({
  series: z.array(
    z.object({
      series_uid: z.string(),
      series_number: z.number().nullable(),
      series_description: nullableText,
      modality: nullableText,
      body_part: nullableText,
      instance_count: z.number(),
      images: z.array(imageLinksResponse),
    }),
  ),
});
export const patientStudiesResponse = z.object({
  patient_id: z.string(),
  issuer: nullableText,
  limit: z.number(),
  offset: z.number(),
  studies: z.array(studySummary.extend({ thumbnail_url: nullableText, viewer_url: z.string().optional() })),
});

const CONTENT_TYPES: Record<ImageKind, string> = { thumbnail: 'image/jpeg', rendered: 'image/jpeg', dicom: 'application/dicom' };

const sop = { sop: 'the SOP Instance UID' };
export const imagesOperations: Operation[] = [
  {
    method: 'get', path: '/studies/{study}/images', id: 'studyImages', tag: 'Images', access: 'viewer-links', pathParams: { study: 'the Study Instance UID' }, query: studyImagesQuery,
    summary: 'The study\'s series and images, with signed, expiring links for an <img> tag or a download',
    responses: { 200: { description: 'the study, its series, their images in instance-number order', json: studyImagesResponse } },
  },
  {
    method: 'get', path: '/images/{sop}/url', id: 'imageUrl', tag: 'Images', access: 'viewer-links', pathParams: sop, query: imageUrlQuery,
    summary: 'One image\'s signed links', responses: { 200: { description: 'the image and its links', json: imageLinksResponse } },
  },
  ...IMAGE_KINDS.map((kind): Operation => ({
    method: 'get', path: `/images/{sop}/${kind}`, id: `signedImage${kind[0]!.toUpperCase()}${kind.slice(1)}`, tag: 'Images', access: 'signed-link', pathParams: sop, query: signedImageQuery,
    summary: `What a signed ${kind} link answers`,
    description: '403 with the reason when the signature does not verify, has expired, or was made for another image or kind.',
    responses: { 200: { description: kind === 'dicom' ? 'the DICOM file as stored' : 'a JPEG', binary: CONTENT_TYPES[kind] } },
  })),
  {
    method: 'get', path: '/patients/{patient}/studies', id: 'patientStudies', tag: 'Images', access: 'summaries', pathParams: { patient: 'the PatientID, exactly' }, query: patientStudiesQuery,
    summary: 'The patient\'s imaging history, newest first, with thumbnails', responses: { 200: { description: 'a page of studies', json: patientStudiesResponse } },
  },
];

/**
 * The EMR's images (issue 16): a study's images by series with signed, expiring links an `<img>` tag or a download
 * can use without a header, one image's links, the patient's imaging history, and the links themselves.
 */
export function imagesApi(services: Services) {
  const { catalog, auth, reads, renderer } = services;
  const router = new Hono<Env>();
  const maxTtl = auth.tokens.lifetime.maxTtl;

  /** Signed links to an instance's answers (thumbnail and rendered only when it has pixels), each with its expiry. */
  const linksOf = async (c: Context<Env>, instance: LinkedInstance, frames: number, kinds: readonly ImageKind[], ttl: number) => {
    const links: Partial<Record<ImageKind, string>> = {};
    let expiresAt = new Date();
    for (const kind of kinds) {
      if (kind !== 'dicom' && frames === 0) continue;
      const signed = await auth.imageLinks.sign(instance, kind, ttl);
      links[kind] = `${c.var.publicBase}/api/v1/images/${instance.sopUid}/${kind}?sig=${signed.sig}`;
      expiresAt = signed.expiresAt;
    }
    return { links, expires_at: expiresAt.toISOString() };
  };
  const ttlOf = (expiresIn: string | undefined) => lifetimeParam(expiresIn, maxTtl) ?? auth.tokens.lifetime.defaultTtl;

  router.get('/studies/:study/images', allow('viewer-links'), async (c) => {
    const { studyUid } = pathScope(c);
    const query = parseQuery(studyImagesQuery, c.req.query());
    const [study] = await catalog.studies(studyQuery([], studyUid, 1));
    if (!study) throw new NotFound('no study with that UID is stored');
    const ttl = ttlOf(query.expires_in);
    const series = await catalog.series({ level: 'series', studyUid, keys: [], fuzzy: false, limit: study.numSeries + 1, offset: 0 });
    const instances = await catalog.storedInstances({ studyUid });
    c.set('auditStudyUids', [studyUid]);
    c.header('Cache-Control', 'no-store');
    const answer: z.infer<typeof studyImagesResponse> = {
      ...summary(study),
      series: await Promise.all(
        series.map(async (row) => {
          const json = JSON.parse(row.json) as DicomJson;
          // In InstanceNumber order, as the index gives them.
          const own = instances.filter((i) => i.seriesUid === row.seriesUid);
          return {
            series_uid: row.seriesUid,
            series_number: numberOf(json, Tag.SeriesNumber),
            series_description: firstString(json, Tag.SeriesDescription) ?? null,
            modality: firstString(json, Tag.Modality) ?? null,
            body_part: firstString(json, Tag.BodyPartExamined) ?? null,
            instance_count: row.numInstances,
            images: await Promise.all(own.map(async (instance) => ({ ...imageOf(instance), ...(await linksOf(c, instance, instance.numberOfFrames, IMAGE_KINDS, ttl)) }))),
          };
        }),
      ),
    };
    return c.json(answer);
  });

  router.get('/images/:sop/url', allow('viewer-links'), async (c) => {
    const { kind, expires_in } = parseQuery(imageUrlQuery, c.req.query());
    const instance = await instanceBySop(c.req.param('sop'));
    c.set('auditStudyUids', [instance.studyUid]);
    c.header('Cache-Control', 'no-store');
    const answer: z.infer<typeof imageLinksResponse> = { ...imageOf(instance), ...(await linksOf(c, instance, instance.numberOfFrames, kind ? [kind] : IMAGE_KINDS, ttlOf(expires_in))) };
    return c.json(answer);
  });

  // The signed links: no credential but the signature, which names the instance and the answer.
  router.get('/images/:sop/:kind{thumbnail|rendered|dicom}', async (c) => {
    const kind = c.req.param('kind') as ImageKind;
    const linked = await auth.imageLinks.verify(c.req.query('sig'), c.req.param('sop'), kind);
    parseQuery(signedImageQuery, c.req.query());
    c.set('auditStudyUids', [linked.studyUid]);
    const instance = await reads.instance(linked);
    // A browser may keep the answer no longer than the link lives.
    const maxAge = Math.max(0, Math.floor((linked.expiresAt - Date.now()) / 1000));
    const cacheControl = `private, max-age=${maxAge}`;
    if (kind === 'dicom') {
      const body = streamOf(reads.instanceStream(instance));
      return c.body(body, 200, { 'Content-Type': 'application/dicom', 'Content-Length': String(instance.size), 'Content-Disposition': `attachment; filename="${instance.sopUid}.dcm"`, 'Cache-Control': cacheControl });
    }
    if (instance.numberOfFrames === 0) throw new NotFound('this instance has no pixel data, so there is nothing to render');
    const response = await sendRendered(c, renderer, instance, [1], { ...renderOptions(c, kind), format: 'jpeg' });
    response.headers.set('Cache-Control', cacheControl);
    return response;
  });

  router.get('/patients/:patient/studies', allow('summaries'), async (c) => {
    const patientId = exactParam(c.req.param('patient'), 'patient_id');
    if (!patientId) throw new BadRequest('give the PatientID: /api/v1/patients/{patient_id}/studies');
    const query = parseQuery(patientStudiesQuery, c.req.query());
    const issuer = exactParam(query.issuer, 'issuer');
    const withLinks = query.viewer_links === 'true';
    if (withLinks && !permits(c.var.principal!, 'viewer-links')) throw new Forbidden('viewer_links=true needs a credential that may ask for viewer links');
    const limit = countParam(query.limit, 'limit', MAX_HISTORY) ?? DEFAULT_HISTORY;
    const offset = countParam(query.offset, 'offset', Number.MAX_SAFE_INTEGER) ?? 0;
    const ttl = ttlOf(query.expires_in);
    // Newest first: the index's study order (StudyDate, StudyTime). The issuer is matched on the stored attributes.
    const rows = await catalog.studies({ ...studyQuery([{ tag: Tag.PatientID, keyword: 'PatientID', value: patientId }], undefined, issuer ? MAX_HISTORY * 10 : limit), offset: issuer ? 0 : offset });
    const studies = (issuer ? rows.filter((row) => issuerOf(row) === issuer).slice(offset, offset + limit) : rows);
    c.set('auditStudyUids', studies.map((s) => s.studyUid));
    c.header('Cache-Control', 'no-store');
    const answer: z.infer<typeof patientStudiesResponse> = {
      patient_id: patientId,
      issuer: issuer ?? null,
      limit,
      offset,
      studies: await Promise.all(
        studies.map(async (study) => {
          const image = await reads.representativeImage({ studyUid: study.studyUid }).catch(() => undefined);
          const thumbnail = image ? (await linksOf(c, image, image.numberOfFrames, ['thumbnail'], ttl)).links.thumbnail ?? null : null;
          const viewer = withLinks ? await auth.tokens.issue(study.studyUid, ttl) : undefined;
          return {
            ...summary(study),
            thumbnail_url: thumbnail,
            ...(viewer && { viewer_url: viewerUrl(c, services.config.viewerUrl, study.studyUid, viewer.token) }),
          };
        }),
      ),
    };
    return c.json(answer);
  });

  const instanceBySop = async (sopUid: string): Promise<StoredInstance> => {
    if (!isValidUid(sopUid)) throw new BadRequest('the path names no SOP Instance UID');
    const key = (await catalog.objectKeysOf([sopUid])).get(sopUid);
    const [instance] = key === undefined ? [] : await catalog.storedInstances({ ...scopeOfKey(key), sopUid });
    if (!instance) throw new NotFound('no instance with that SOP Instance UID is stored');
    return instance;
  };

  return router;
}

/** The study and series an object key names (storage/keys.ts). */
function scopeOfKey(key: string): { studyUid: string; seriesUid: string } {
  const parts = instanceKeyParts(key);
  if (!parts) throw new NotFound('no instance with that SOP Instance UID is stored');
  return { studyUid: parts.studyUid, seriesUid: parts.seriesUid };
}

/** An image as the EMR lists it, beside its links. */
function imageOf(instance: StoredInstance) {
  const json = JSON.parse(instance.json) as DicomJson;
  return {
    sop_instance_uid: instance.sopUid,
    series_uid: instance.seriesUid,
    study_uid: instance.studyUid,
    instance_number: numberOf(json, Tag.InstanceNumber),
    frames: instance.numberOfFrames,
    size: instance.size,
    content_types: Object.fromEntries(IMAGE_KINDS.filter((k) => k === 'dicom' || instance.numberOfFrames > 0).map((k) => [k, CONTENT_TYPES[k]])),
  };
}

function numberOf(json: DicomJson, tag: string): number | null {
  const value = json[tag]?.Value?.[0];
  const n = typeof value === 'number' ? value : Number(value);
  return value === undefined || value === null || Number.isNaN(n) ? null : n;
}

