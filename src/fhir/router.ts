import { Hono, type Context } from 'hono';
import { allow } from '../auth/middleware.js';
import { issuerOf } from '../auth/readable-studies.js';
import type { StudyRow } from '../catalog/catalog.js';
import type { MatchKey } from '../catalog/qido.js';
import type { Env, Services } from '../context.js';
import { Tag } from '../dicom/tags.js';
import { isValidUid } from '../dicom/uid.js';
import { dicomwebRoot } from '../dicomweb/urls.js';
import { BadRequest, HttpError, NotFound } from '../errors.js';
import { DICOM_UID_SYSTEM, FHIR_JSON, imagingStudy, operationOutcome, type Resource } from './resources.js';

const DEFAULT_COUNT = 20;
const MAX_COUNT = 100;
/** Studies read to find a page of one issuer's patient (the issuer is not an indexed key). */
const ISSUER_SCAN = 1000;
/** The search parameters this server takes; FHIR servers ignore the others and say so (R4 3.1.1.5.8). */
const SEARCH_PARAMETERS = ['patient.identifier', 'patient:identifier', 'identifier', 'started', '_count', '_offset'];
const FORMAT_PARAMETER = '_format';
const JSON_FORMATS = new Set(['json', FHIR_JSON, 'application/json']);

/**
 * FHIR R4 ImagingStudy, read-only (issue 16), answered from the index: read by id (the Study Instance UID), search by
 * patient identifier, identifier (accession number, or the Study Instance UID as urn:dicom:uid), and started, with
 * the DICOMweb root as each study's Endpoint. JSON only; every error an OperationOutcome (app.ts). Reading needs the
 * right to read study summaries, as the EMR's summaries do: an ImagingStudy says as much, and no more.
 */
export function fhirRouter(services: Services) {
  const { catalog, config } = services;
  const router = new Hono<Env>();
  const baseOf = (c: Context<Env>) => `${config.publicUrl ?? c.var.publicBase}/fhir`;

  const resourceOf = async (c: Context<Env>, study: StudyRow): Promise<Resource> => {
    const series = await catalog.series({ level: 'series', studyUid: study.studyUid, keys: [], fuzzy: false, limit: study.numSeries + 1, offset: 0 });
    const instances = await catalog.storedInstances({ studyUid: study.studyUid });
    return imagingStudy(study, series, instances, dicomwebRoot(c, config.publicUrl));
  };

  router.use('*', async (c, next) => {
    acceptJson(c);
    await next();
  });

  router.get('/metadata', (c) => fhirJson(c, capabilityStatement(baseOf(c))));

  router.get('/ImagingStudy/:id', allow('summaries'), async (c) => {
    const id = c.req.param('id');
    const shown = id.slice(0, 64);
    if (!isValidUid(id)) throw new NotFound(`no ImagingStudy has the id "${shown}": ids here are Study Instance UIDs`);
    const [study] = await catalog.studies({ level: 'study', studyUid: id, keys: [], fuzzy: false, limit: 1, offset: 0 });
    if (!study) throw new NotFound(`no ImagingStudy has the id ${id}`);
    c.set('auditStudyUids', [id]);
    return fhirJson(c, await resourceOf(c, study));
  });

  router.get('/ImagingStudy', allow('summaries'), async (c) => {
    const params = new URL(c.req.url).searchParams;
    const search = searchOf(params);
    const base = baseOf(c);
    const rows = search.empty
      ? []
      : await catalog.studies({ level: 'study', keys: search.keys, fuzzy: false, limit: search.issuer === undefined ? search.count + 1 : ISSUER_SCAN, offset: search.issuer === undefined ? search.offset : 0 });
    const matching = search.issuer === undefined ? rows : rows.filter((row) => issuerOf(row) === search.issuer).slice(search.offset, search.offset + search.count + 1);
    const page = matching.slice(0, search.count);
    c.set('auditStudyUids', page.map((s) => s.studyUid));
    const link = (offset: number) => `${base}/ImagingStudy?${new URLSearchParams([...search.used, ['_count', String(search.count)], ['_offset', String(offset)]])}`;
    return fhirJson(c, {
      resourceType: 'Bundle',
      type: 'searchset',
      link: [{ relation: 'self', url: link(search.offset) }, ...(matching.length > search.count ? [{ relation: 'next', url: link(search.offset + search.count) }] : [])],
      entry: [
        ...(await Promise.all(page.map(async (study) => ({ fullUrl: `${base}/ImagingStudy/${study.studyUid}`, resource: await resourceOf(c, study), search: { mode: 'match' } })))),
        ...(search.ignored.length > 0 ? [{ resource: operationOutcome('warning', 'not-supported', `ignored search parameters: ${search.ignored.join(', ')}; this server searches ImagingStudy by ${SEARCH_PARAMETERS.join(', ')}`), search: { mode: 'outcome' } }] : []),
      ],
    });
  });

  return router;
}

type Search = { keys: MatchKey[]; issuer?: string; count: number; offset: number; used: Array<[string, string]>; ignored: string[]; empty: boolean };

/** The search asked for, in the index's terms; what it used, for the self link, and what it ignored. */
function searchOf(params: URLSearchParams): Search {
  const search: Search = { keys: [], count: DEFAULT_COUNT, offset: 0, used: [], ignored: [], empty: false };
  const dates = { from: '00000101', to: '99991231' };
  for (const [name, value] of params) {
    if (name === FORMAT_PARAMETER) continue;
    // Ignored, `patient=Patient/…` would answer every patient's studies; this server keeps no Patient resources.
    if (name === 'patient') throw new BadRequest('patient takes no Patient reference here: search by patient.identifier=[issuer|]PatientID');
    if (!SEARCH_PARAMETERS.includes(name)) {
      if (!search.ignored.includes(name)) search.ignored.push(name);
      continue;
    }
    if (name === '_count') search.count = whole(name, value, 1, MAX_COUNT);
    else if (name === '_offset') search.offset = whole(name, value, 0, Number.MAX_SAFE_INTEGER);
    else {
      search.used.push([name, value]);
      if (name === 'started') narrow(dates, value);
      else if (name === 'identifier') search.keys.push(identifierKey(value));
      else {
        const { system, value: patientId } = token(name, value);
        search.keys.push({ tag: Tag.PatientID, keyword: 'PatientID', value: exact(name, patientId) });
        if (system !== undefined) search.issuer = system;
      }
    }
  }
  if (dates.from > dates.to) search.empty = true;
  else if (dates.from !== '00000101' || dates.to !== '99991231') search.keys.push({ tag: Tag.StudyDate, keyword: 'StudyDate', value: `${dates.from}-${dates.to}` });
  return search;
}

/** `identifier=[system|]value`: the Study Instance UID under urn:dicom:uid, else an accession number. */
function identifierKey(raw: string): MatchKey {
  const { system, value } = token('identifier', raw);
  if (system === DICOM_UID_SYSTEM) {
    const uid = value.replace(/^urn:oid:/, '');
    if (!isValidUid(uid)) throw new BadRequest(`identifier ${raw.slice(0, 80)}: under ${DICOM_UID_SYSTEM} the value is urn:oid: and a UID`);
    return { tag: Tag.StudyInstanceUID, keyword: 'StudyInstanceUID', value: uid };
  }
  return { tag: Tag.AccessionNumber, keyword: 'AccessionNumber', value: exact('identifier', value) };
}

/** A token parameter's `system|value` (FHIR R4 3.1.1.4.9), or its value alone. */
function token(name: string, raw: string): { system?: string; value: string } {
  const bar = raw.indexOf('|');
  const [system, value] = bar < 0 ? [undefined, raw] : [raw.slice(0, bar) || undefined, raw.slice(bar + 1)];
  if (!value) throw new BadRequest(`${name} needs a value: ${name}=[system|]value`);
  return { system, value };
}

/** A token is matched exactly: the index's wildcards are not FHIR's. */
function exact(name: string, value: string): string {
  if (/[*?\\]/.test(value) || value.length > 64) throw new BadRequest(`${name} is an exact value of at most 64 characters, without * ? or \\`);
  return value;
}

/** Narrows [from, to] (YYYYMMDD) by one `started` value: a prefix (eq, ge, gt, le, lt; none is eq) and a date. */
function narrow(dates: { from: string; to: string }, raw: string): void {
  const m = /^(eq|ge|gt|le|lt)?(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$/.exec(raw);
  if (!m) throw new BadRequest(`started must be a date such as 2026-01-05, 2026-01 or 2026, after an optional prefix eq, ge, gt, le or lt; not "${raw.slice(0, 40)}"`);
  const [, prefix = 'eq', year, month, day] = m;
  const first = new Date(Date.UTC(Number(year), month ? Number(month) - 1 : 0, day ? Number(day) : 1));
  const last = day ? first : month ? new Date(Date.UTC(Number(year), Number(month), 0)) : new Date(Date.UTC(Number(year), 11, 31));
  if (Number.isNaN(first.getTime()) || (month && (Number(month) < 1 || Number(month) > 12)) || (day && first.getUTCDate() !== Number(day))) throw new BadRequest(`started: ${raw.slice(0, 40)} is not a date`);
  const shift = (d: Date, days: number) => new Date(d.getTime() + days * 86_400_000);
  const da = (d: Date) => d.toISOString().slice(0, 10).replaceAll('-', '');
  const [from, to] = { eq: [first, last], ge: [first, undefined], gt: [shift(last, 1), undefined], le: [undefined, last], lt: [undefined, shift(first, -1)] }[prefix as 'eq']!;
  if (from && da(from) > dates.from) dates.from = da(from);
  if (to && da(to) < dates.to) dates.to = da(to);
}

function whole(name: string, raw: string, min: number, max: number): number {
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) throw new BadRequest(`${name} is a whole number from ${min} to ${max}, not "${raw.slice(0, 20)}"`);
  return Number(raw);
}

/** JSON it is: `_format` or Accept asking for XML (or anything but JSON) is 406. */
function acceptJson(c: Context<Env>): void {
  const format = c.req.query(FORMAT_PARAMETER);
  if (format !== undefined && !JSON_FORMATS.has(format.split(';')[0]!.trim())) throw new HttpError(406, 'not-acceptable', `_format ${format.slice(0, 40)}: this server answers FHIR in JSON only (application/fhir+json)`);
  const accept = c.req.header('accept');
  if (format === undefined && accept && !/(^|,)\s*(\*\/\*|application\/\*|application\/(fhir\+)?json)\s*(;|,|$)/i.test(accept)) {
    throw new HttpError(406, 'not-acceptable', 'this server answers FHIR in JSON only: accept application/fhir+json');
  }
}

function fhirJson(c: Context<Env>, resource: Resource): Response {
  return c.body(JSON.stringify(resource), 200, { 'Content-Type': `${FHIR_JSON}; charset=utf-8` });
}

/** What this FHIR server does (R4 CapabilityStatement), minimal: ImagingStudy read and search. */
function capabilityStatement(base: string): Resource {
  return {
    resourceType: 'CapabilityStatement',
    status: 'active',
    date: '2026-12-06',
    kind: 'instance',
    software: { name: 'PACS-lite' },
    implementation: { description: 'PACS-lite FHIR R4 ImagingStudy (read-only)', url: base },
    fhirVersion: '4.0.1',
    format: ['json'],
    rest: [
      {
        mode: 'server',
        resource: [
          {
            type: 'ImagingStudy',
            interaction: [{ code: 'read' }, { code: 'search-type' }],
            searchParam: [
              { name: 'patient', type: 'reference', documentation: 'as patient.identifier=[IssuerOfPatientID|]PatientID (or patient:identifier)' },
              { name: 'identifier', type: 'token', documentation: 'an accession number, or urn:dicom:uid|urn:oid:<Study Instance UID>' },
              { name: 'started', type: 'date', documentation: 'a day, month or year, with eq, ge, gt, le or lt' },
            ],
          },
        ],
      },
    ],
  };
}
