import { Hono, type Context } from 'hono';
import { allow } from '../auth/middleware.js';
import { patientOf } from '../auth/readable-studies.js';
import type { StudyRow } from '../catalog/catalog.js';
import type { MatchKey, QidoQuery } from '../catalog/qido.js';
import type { Env, Services } from '../context.js';
import { firstString, type DicomJson } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { pathScope } from '../dicomweb/path-uids.js';
import { zipResponse } from '../dicomweb/wado.js';
import { downloadOf } from '../read/download.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import { z } from 'zod';
import { noQuery, type Operation } from './openapi.js';
import { countParam, exactParam, lifetimeParam, parseQuery } from './params.js';

/** A listing by accession or patient is for one patient's orders, not a browse of the archive. */
const MAX_SUMMARIES = 100;

/* The query parameters of each route; values are checked further by params.ts, whose messages say what to send. */
const linkParams = {
  expires_in: z.string().optional().describe('seconds the link works; the default is PACS_VIEWER_TOKEN_TTL, the most PACS_VIEWER_TOKEN_MAX_TTL'),
  priors: z.enum(['true', 'false']).optional().describe('true: the link also opens the patient\'s other studies'),
};
const accession = z.string().describe('the accession number, exactly (no wildcards)');
const patientId = z.string().describe('the PatientID, exactly (no wildcards)');
export const viewerUrlQuery = z.strictObject(linkParams);
export const accessionViewerUrlQuery = z.strictObject({ accession, patient_id: patientId.optional(), ...linkParams });
export const downloadQuery = z.strictObject({
  layout: z.enum(['readable', 'media']).optional().describe('readable (default): folders named by patient, study and series; media: a CD\'s file-set, DICOMDIR first, for a burning tool or another PACS'),
});
export const studiesQuery = z.strictObject({
  accession: accession.optional(),
  patient_id: patientId.optional(),
  limit: z.string().optional().describe(`studies in a page, at most ${MAX_SUMMARIES}`),
  offset: z.string().optional().describe('studies to skip'),
});

const nullableText = z.string().nullable();
/** A study as an EMR shows it (summary()). */
export const studySummary = z.object({
  study_uid: z.string(),
  patient_name: nullableText,
  patient_id: nullableText,
  patient_birth_date: nullableText,
  patient_sex: nullableText,
  accession_number: nullableText,
  study_date: nullableText,
  study_time: nullableText,
  study_description: nullableText,
  modalities: z.array(z.string()),
  series_count: z.number(),
  instance_count: z.number(),
});
export const viewerLinkResponse = z.object({
  viewer_url: z.string(),
  study_uid: z.string(),
  jti: z.string().describe('the token\'s id, for DELETE /api/v1/viewer-tokens/{jti}'),
  priors: z.boolean(),
  expires_in: z.number(),
  expires_at: z.string(),
});

const study = { study: 'the Study Instance UID' };
export const studiesOperations: Operation[] = [
  {
    method: 'get', path: '/studies/{study}/viewer-url', id: 'studyViewerUrl', tag: 'Viewer links', access: 'viewer-links', pathParams: study, query: viewerUrlQuery,
    summary: 'A signed, expiring link that opens the study in OHIF',
    responses: { 200: { description: 'the link', json: viewerLinkResponse } },
  },
  {
    method: 'get', path: '/viewer-url', id: 'accessionViewerUrl', tag: 'Viewer links', access: 'viewer-links', query: accessionViewerUrlQuery,
    summary: 'A viewer link for the study of an accession number',
    description: '409 when the accession number names more than one study: add patient_id, or ask by Study Instance UID.',
    responses: { 200: { description: 'the link', json: viewerLinkResponse } },
  },
  {
    method: 'get', path: '/studies/{study}', id: 'studySummary', tag: 'Studies', access: 'summaries', pathParams: study, query: noQuery,
    summary: 'A study\'s summary', responses: { 200: { description: 'the summary', json: studySummary } },
  },
  {
    method: 'get', path: '/studies/{study}/download', id: 'studyDownload', tag: 'Studies', access: 'read', pathParams: study, query: downloadQuery,
    summary: 'The study\'s files in a ZIP, under readable folder names or as a CD\'s file-set with a DICOMDIR', responses: { 200: { description: 'the ZIP, streamed', binary: 'application/zip' } },
  },
  {
    method: 'get', path: '/studies', id: 'studiesByOrder', tag: 'Studies', access: 'summaries', query: studiesQuery,
    summary: 'The studies of an accession number or a patient, newest first',
    description: 'Give accession, patient_id or both; to search the archive, use QIDO-RS at /dicom-web/studies.',
    responses: { 200: { description: 'the summaries', json: z.array(studySummary) } },
  },
];

/**
 * What an EMR needs about a study: short JSON summaries to check it is the right one, and viewer links
 * that open it, read-only and for a limited time, in OHIF.
 */
export function studiesApi(services: Services) {
  const { catalog, config, auth } = services;
  const router = new Hono<Env>();

  const studyByUid = async (c: Context<Env>): Promise<StudyRow> => {
    const [row] = await catalog.studies(studyQuery([], pathScope(c).studyUid, 1));
    if (!row) throw new NotFound('no study with that UID is stored');
    return row;
  };

  const viewerLink = async (c: Context<Env>, study: StudyRow, query: z.infer<typeof viewerUrlQuery>) => {
    const priors = query.priors === 'true';
    const patient = priors ? patientOf(JSON.parse(study.json) as DicomJson) : undefined;
    if (priors && !patient) throw new HttpError(409, 'no-patient-id', 'the study has no PatientID, so no other study can be told to be the same patient\'s; ask for the link without priors=true');
    const issued = await auth.tokens.issue(study.studyUid, lifetimeParam(query.expires_in, auth.tokens.lifetime.maxTtl), patient);
    c.set('auditStudyUids', [study.studyUid]);
    c.header('Cache-Control', 'no-store');
    return c.json<z.infer<typeof viewerLinkResponse>>({
      viewer_url: viewerUrl(c, config.viewerUrl, study.studyUid, issued.token),
      study_uid: study.studyUid,
      // The token's id, for DELETE /api/v1/viewer-tokens/{jti}.
      jti: issued.jti,
      priors: patient !== undefined,
      expires_in: issued.expiresIn,
      expires_at: issued.expiresAt.toISOString(),
    });
  };

  router.get('/studies/:study/viewer-url', allow('viewer-links'), async (c) => {
    const query = parseQuery(viewerUrlQuery, c.req.query());
    return viewerLink(c, await studyByUid(c), query);
  });

  router.get('/viewer-url', allow('viewer-links'), async (c) => {
    const { accession: givenAccession, patient_id, ...link } = parseQuery(accessionViewerUrlQuery, c.req.query());
    const accession = exactParam(givenAccession, 'accession');
    if (!accession) throw new BadRequest('give the accession number of the order: /api/v1/viewer-url?accession=…');
    // Accession numbers are unique per issuer only: the patient narrows one that two patients' orders share.
    const patientId = exactParam(patient_id, 'patient_id');
    const keys: MatchKey[] = [{ tag: Tag.AccessionNumber, keyword: 'AccessionNumber', value: accession }];
    if (patientId) keys.push({ tag: Tag.PatientID, keyword: 'PatientID', value: patientId });
    const rows = await catalog.studies(studyQuery(keys, undefined, 2));
    const which = patientId ? `accession number ${accession} of patient ${patientId}` : `accession number ${accession}`;
    if (rows.length === 0) throw new NotFound(`no study with ${which} is stored`);
    if (rows.length > 1) {
      throw new HttpError(409, 'ambiguous-accession', `${which} names more than one study; ${patientId ? '' : 'add &patient_id=…, or '}ask for a link by Study Instance UID: /api/v1/studies/{StudyInstanceUID}/viewer-url`);
    }
    return viewerLink(c, rows[0]!, link);
  });

  router.get('/studies/:study', allow('summaries'), async (c) => {
    parseQuery(noQuery, c.req.query());
    return c.json(summary(await studyByUid(c)));
  });

  // The study's files in a ZIP, as WADO-RS answers Accept: application/zip, for a button or a script.
  router.get('/studies/:study/download', allow('read'), async (c) => {
    const { layout } = parseQuery(downloadQuery, c.req.query());
    const scope = pathScope(c);
    c.set('auditStudyUids', [scope.studyUid]);
    return zipResponse(c, services.reads, await downloadOf(catalog, services.reads, scope, layout));
  });

  router.get('/studies', allow('summaries'), async (c) => {
    const query = parseQuery(studiesQuery, c.req.query());
    const keys: MatchKey[] = [];
    const accession = exactParam(query.accession, 'accession');
    const patientId = exactParam(query.patient_id, 'patient_id');
    if (accession) keys.push({ tag: Tag.AccessionNumber, keyword: 'AccessionNumber', value: accession });
    if (patientId) keys.push({ tag: Tag.PatientID, keyword: 'PatientID', value: patientId });
    if (keys.length === 0) throw new BadRequest('give accession or patient_id; to search the archive, use QIDO-RS at /dicom-web/studies');
    // Offset paging, as QIDO-RS pages: a patient's orders are few and the index orders them stably.
    const limit = countParam(query.limit, 'limit', MAX_SUMMARIES) ?? MAX_SUMMARIES;
    const offset = countParam(query.offset, 'offset', Number.MAX_SAFE_INTEGER) ?? 0;
    return c.json((await catalog.studies({ ...studyQuery(keys, undefined, limit), offset })).map(summary));
  });

  return router;
}

/** Where a viewer link opens the study: the OHIF this server serves, unless the clinic hosts its own (PACS_VIEWER_URL). */
export function viewerUrl(c: Context<Env>, viewerBase: string | undefined, studyUid: string, token: string): string {
  const url = new URL(`${viewerBase ?? c.var.publicBase}/viewer`);
  url.searchParams.set('StudyInstanceUIDs', studyUid);
  url.searchParams.set('token', token);
  return url.toString();
}

export function studyQuery(keys: MatchKey[], studyUid: string | undefined, limit: number): QidoQuery {
  return { level: 'study', studyUid, keys, fuzzy: false, limit, offset: 0 };
}

/** The study as an EMR shows it, in plain JSON rather than DICOM JSON. */
export function summary(row: StudyRow): z.infer<typeof studySummary> {
  const json = JSON.parse(row.json) as DicomJson;
  const text = (tag: string) => firstString(json, tag) ?? null;
  return {
    study_uid: row.studyUid,
    patient_name: text(Tag.PatientName),
    patient_id: text(Tag.PatientID),
    patient_birth_date: text(Tag.PatientBirthDate),
    patient_sex: text(Tag.PatientSex),
    accession_number: text(Tag.AccessionNumber),
    study_date: text(Tag.StudyDate),
    study_time: text(Tag.StudyTime),
    study_description: text(Tag.StudyDescription),
    modalities: row.modalities ? row.modalities.split('\\') : [],
    series_count: row.numSeries,
    instance_count: row.numInstances,
  };
}
