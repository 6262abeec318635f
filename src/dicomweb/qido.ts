import { Hono, type Context } from 'hono';
import type { InstanceRow, SeriesRow, StudyRow } from '../catalog/catalog.js';
import { isUidListKey, isUniversal, type Level, type MatchKey, type QidoQuery } from '../catalog/qido.js';
import { INSTANCE_TAGS, pick, seriesAttributes, studyAttributes } from '../catalog/record.js';
import type { DicomJson } from '../dicom/json.js';
import { Tag, resolveAttribute } from '../dicom/tags.js';
import { BadRequest, HttpError } from '../errors.js';
import type { Env, Services } from '../context.js';
import { negotiate, parseAccept } from './media-type.js';
import { pathUids } from './path-uids.js';
import { absolutizeBulkData } from '../read/metadata.js';
import { dicomwebRoot } from './urls.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10000;
/** Not matching keys; `token` is a viewer token given in the URL (auth/middleware.ts). */
const CONTROL_PARAMS = new Set(['limit', 'offset', 'fuzzymatching', 'includefield', 'token']);

type Include = { all: boolean; tags: string[] };
/** What the search was of (PS3.18 Table 10.6.1-2): a search of all series also answers study attributes. */
type Target = { study?: string; series?: string };
type Search = { sql: QidoQuery; include: Include; target: Target };

/** QIDO-RS (PS3.18 10.6): search studies, series and instances, answered from the index alone. */
export function qidoRouter(services: Services) {
  const { catalog, config } = services;
  const router = new Hono<Env>();

  const search =
    <R>(level: Level, find: (query: QidoQuery) => Promise<R[]>, toJson: (row: R, search: Search, root: string) => DicomJson) =>
    async (c: Context<Env>) => {
      const query = parseQuery(c, level);
      // One row past the page tells whether more results can be asked for (PS3.18 8.3.4.4).
      const rows = await find({ ...query.sql, limit: query.sql.limit + 1 });
      const root = dicomwebRoot(c, config.publicUrl);
      if (rows.length > query.sql.limit) c.header('Warning', `299 ${root}: There are additional results that can be requested`);
      return answer(c, rows.slice(0, query.sql.limit).map((row) => sortedJson(toJson(row, query, root))));
    };

  router.get('/studies', search('study', (q) => catalog.studies(q), studyJson));
  const seriesSearch = search('series', (q) => catalog.series(q), seriesJson);
  router.get('/series', seriesSearch);
  router.get('/studies/:study/series', seriesSearch);
  const instanceSearch = search('instance', (q) => catalog.instances(q), instanceJson);
  router.get('/instances', instanceSearch);
  router.get('/studies/:study/instances', instanceSearch);
  router.get('/studies/:study/series/:series/instances', instanceSearch);

  return router;
}

function parseQuery(c: Context<Env>, level: Level): Search {
  const params = new URL(c.req.url).searchParams;
  const keys: MatchKey[] = [];
  const include: Include = { all: false, tags: [] };
  for (const name of new Set(params.keys())) {
    const values = params.getAll(name);
    if (name === 'includefield') {
      for (const field of values.flatMap((v) => v.split(',')).map((f) => f.trim()).filter(Boolean)) {
        if (field === 'all') include.all = true;
        else include.tags.push(attribute(field, 'includefield').tag);
      }
      continue;
    }
    if (CONTROL_PARAMS.has(name)) {
      if (values.length > 1) throw new BadRequest(`${name} is given ${values.length} times; give it once`);
      continue;
    }
    if (name.includes('.')) throw new BadRequest(`${name}: sequence matching keys are not supported`);
    const entry = attribute(name, 'query key');
    // PS3.18 8.3.4.1: a key appears once, except a UID list key, whose values then form the list.
    if (values.length > 1 && !isUidListKey(entry.tag)) {
      throw new BadRequest(`${name} is given ${values.length} times; only UID list keys may repeat`);
    }
    const value = values.join('\\');
    // A universal key asks for the attribute to be returned (PS3.18 8.3.4.3), like includefield.
    if (isUniversal(value)) include.tags.push(entry.tag);
    keys.push({ tag: entry.tag, keyword: entry.keyword, value });
  }
  const named = pathUids(c);
  const target: Target = { study: named.studyUid, series: named.seriesUid };
  const sql: QidoQuery = {
    level,
    studyUid: target.study,
    seriesUid: target.series,
    // A viewer token's search covers the studies it may read only (a path naming another was refused already).
    keys: c.var.readableStudies ? [...keys, { tag: Tag.StudyInstanceUID, keyword: 'StudyInstanceUID', value: c.var.readableStudies.join('\\') }] : keys,
    fuzzy: booleanParam(params.get('fuzzymatching'), 'fuzzymatching'),
    limit: integerParam(params.get('limit'), 'limit', DEFAULT_LIMIT, MAX_LIMIT),
    offset: integerParam(params.get('offset'), 'offset', 0, Number.MAX_SAFE_INTEGER),
  };
  return { sql, include, target };
}

function attribute(name: string, what: string) {
  const entry = resolveAttribute(name);
  if (!entry) throw new BadRequest(`${what} "${name}" is neither a DICOM keyword nor an 8-digit hex tag`);
  return entry;
}

function booleanParam(raw: string | null, name: string): boolean {
  if (raw === null || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new BadRequest(`${name} must be true or false, not "${raw}"`);
}

/** limit=0 is a fair question (is there anything?): it answers no results and the Warning when there are. */
function integerParam(raw: string | null, name: string, fallback: number, max: number): number {
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new BadRequest(`${name} must be a whole number, not "${raw}"`);
  return Math.min(Number(raw), max);
}

async function answer(c: Context<Env>, results: string[]) {
  const accepted = negotiate(parseAccept(c.req.header('accept')), [
    { mediaType: 'application/dicom+json' },
    { mediaType: 'application/json' },
  ]);
  if (!accepted) throw new HttpError(406, 'not-acceptable', 'QIDO-RS answers application/dicom+json (or application/json) only');
  return c.body(`[${results.join(',')}]`, 200, { 'Content-Type': `${accepted.mediaType}; charset=utf-8` });
}

/** Stored attributes asked for by includefield (or by a universal key); `all` gives every one stored. */
function included(stored: DicomJson, include: Include): DicomJson {
  return include.all ? stored : pick(stored, include.tags);
}

const retrieveUrl = (url: string) => ({ [Tag.RetrieveURL]: { vr: 'UR', Value: [url] } });

function studyJson(row: StudyRow, { include }: Search, root: string): DicomJson {
  const stored = JSON.parse(row.json) as DicomJson;
  return { ...included(stored, include), ...studyAttributes(row, stored), ...retrieveUrl(`${root}/studies/${row.studyUid}`) };
}

function seriesJson(row: SeriesRow, { include, target }: Search, root: string): DicomJson {
  const study = JSON.parse(row.study.json) as DicomJson;
  const stored = JSON.parse(row.json) as DicomJson;
  return {
    ...included(study, include),
    ...(target.study ? {} : studyAttributes(row.study, study)),
    ...included(stored, include),
    ...seriesAttributes(row, stored, study),
    ...retrieveUrl(`${root}/studies/${row.studyUid}/series/${row.seriesUid}`),
  };
}

/** PS3.18 10.6.3.3.3: a search of all instances answers study and series attributes, one in a study series attributes. */
function instanceJson(row: InstanceRow, { include, target }: Search, root: string): DicomJson {
  const study = JSON.parse(row.series.study.json) as DicomJson;
  const series = JSON.parse(row.series.json) as DicomJson;
  const stored = JSON.parse(absolutizeBulkData(row.json, root)) as DicomJson;
  return {
    ...included(study, include),
    ...(target.study ? {} : studyAttributes(row.series.study, study)),
    ...included(series, include),
    ...(target.series ? {} : seriesAttributes(row.series, series, study)),
    // Viewers place an instance by these whatever the target.
    [Tag.StudyInstanceUID]: study[Tag.StudyInstanceUID]!,
    [Tag.SeriesInstanceUID]: series[Tag.SeriesInstanceUID]!,
    ...pick(series, [Tag.Modality]),
    ...included(stored, include),
    ...pick(stored, INSTANCE_TAGS),
    ...retrieveUrl(`${root}/studies/${row.studyUid}/series/${row.seriesUid}/instances/${row.sopUid}`),
  };
}

/** DICOM JSON lists attributes in tag order (PS3.18 F.2.1). */
function sortedJson(json: DicomJson): string {
  const sorted: DicomJson = {};
  for (const tag of Object.keys(json).sort()) sorted[tag] = json[tag]!;
  return JSON.stringify(sorted);
}
