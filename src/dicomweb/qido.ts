import { Hono, type Context } from 'hono';
import type { InstanceRow, SeriesRow, StudyRow } from '../catalog/catalog.js';
import { type Level, type MatchKey, type QidoQuery } from '../catalog/qido.js';
import { INSTANCE_TAGS, SERIES_TAGS, STUDY_TAGS, pick } from '../catalog/record.js';
import type { DicomJson } from '../dicom/json.js';
import { Tag, resolveAttribute } from '../dicom/tags.js';
import { assertUid } from '../dicom/uid.js';
import { BadRequest, HttpError } from '../errors.js';
import type { Env, Services } from '../context.js';
import { negotiate, parseAccept } from './media-type.js';
import { absolutizeBulkData, dicomwebRoot } from './urls.js';

const DEFAULT_LIMIT = 1000;
const MAX_LIMIT = 10000;
const CONTROL_PARAMS = new Set(['limit', 'offset', 'fuzzymatching', 'includefield']);

/** QIDO-RS (PS3.18 10.6): search studies, series and instances, answered from the index alone. */
export function qidoRouter(services: Services) {
  const { catalog, config } = services;
  const router = new Hono<Env>();

  router.get('/studies', async (c) => {
    const query = parseQuery(c, 'study');
    const rows = await catalog.studies(query.sql);
    return answer(c, rows.map((row) => studyJson(row, query.include, dicomwebRoot(c, config.publicUrl))));
  });

  const seriesSearch = async (c: Context<Env>) => {
    const query = parseQuery(c, 'series');
    const rows = await catalog.series(query.sql);
    return answer(c, rows.map((row) => seriesJson(row, query.include, dicomwebRoot(c, config.publicUrl))));
  };
  router.get('/series', seriesSearch);
  router.get('/studies/:study/series', seriesSearch);

  const instanceSearch = async (c: Context<Env>) => {
    const query = parseQuery(c, 'instance');
    const rows = await catalog.instances(query.sql);
    return answer(c, rows.map((row) => instanceJson(row, query.include, dicomwebRoot(c, config.publicUrl))));
  };
  router.get('/instances', instanceSearch);
  router.get('/studies/:study/instances', instanceSearch);
  router.get('/studies/:study/series/:series/instances', instanceSearch);

  return router;
}

type Include = { all: boolean; tags: string[] };

function parseQuery(c: Context<Env>, level: Level): { sql: QidoQuery; include: Include } {
  const url = new URL(c.req.url);
  const params = url.searchParams;
  const keys: MatchKey[] = [];
  const include: Include = { all: false, tags: [] };
  for (const [name, value] of params) {
    if (name === 'includefield') {
      for (const field of value.split(',').map((f) => f.trim()).filter(Boolean)) {
        if (field === 'all') include.all = true;
        else include.tags.push(attribute(field, 'includefield').tag);
      }
    } else if (!CONTROL_PARAMS.has(name)) {
      if (name.includes('.')) throw new BadRequest(`${name}: sequence matching keys are not supported`);
      const entry = attribute(name, 'query key');
      keys.push({ tag: entry.tag, keyword: entry.keyword, value });
    }
  }
  const study = c.req.param('study');
  const series = c.req.param('series');
  try {
    return {
      include,
      sql: {
        level,
        studyUid: study === undefined ? undefined : assertUid('StudyInstanceUID in the URL', study),
        seriesUid: series === undefined ? undefined : assertUid('SeriesInstanceUID in the URL', series),
        keys,
        fuzzy: params.get('fuzzymatching') === 'true',
        limit: integerParam(params.get('limit'), 'limit', DEFAULT_LIMIT, 1, MAX_LIMIT),
        offset: integerParam(params.get('offset'), 'offset', 0, 0, Number.MAX_SAFE_INTEGER),
      },
    };
  } catch (e) {
    if (e instanceof Error && !(e instanceof HttpError)) throw new BadRequest(e.message);
    throw e;
  }
}

function attribute(name: string, what: string) {
  const entry = resolveAttribute(name);
  if (!entry) throw new BadRequest(`${what} "${name}" is neither a DICOM keyword nor an 8-digit hex tag`);
  return entry;
}

function integerParam(raw: string | null, name: string, fallback: number, min: number, max: number): number {
  if (raw === null || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new BadRequest(`${name} must be a whole number, not "${raw}"`);
  return Math.min(Math.max(Number(raw), min), max);
}

async function answer(c: Context<Env>, results: string[]) {
  const accepted = negotiate(parseAccept(c.req.header('accept')), [
    { mediaType: 'application/dicom+json' },
    { mediaType: 'application/json' },
  ]);
  if (!accepted) throw new HttpError(406, 'not-acceptable', 'QIDO-RS answers application/dicom+json (or application/json) only');
  return c.body(`[${results.join(',')}]`, 200, { 'Content-Type': `${accepted.mediaType}; charset=utf-8` });
}

function withIncluded(base: DicomJson, source: DicomJson, include: Include): DicomJson {
  if (include.all) return { ...source, ...base };
  for (const tag of include.tags) if (source[tag] && !base[tag]) base[tag] = source[tag];
  return base;
}

function studyJson(row: StudyRow, include: Include, root: string): string {
  const stored = JSON.parse(row.json) as DicomJson;
  const json = withIncluded(pick(stored, STUDY_TAGS), stored, include);
  json[Tag.ModalitiesInStudy] = { vr: 'CS', Value: row.modalities ? row.modalities.split('\\') : [] };
  json[Tag.NumberOfStudyRelatedSeries] = { vr: 'IS', Value: [row.numSeries] };
  json[Tag.NumberOfStudyRelatedInstances] = { vr: 'IS', Value: [row.numInstances] };
  json[Tag.RetrieveURL] = { vr: 'UR', Value: [`${root}/studies/${row.studyUid}`] };
  return sortedJson(json);
}

function seriesJson(row: SeriesRow, include: Include, root: string): string {
  const stored = JSON.parse(row.json) as DicomJson;
  const study = JSON.parse(row.studyJson) as DicomJson;
  const json = withIncluded(withIncluded(pick(stored, SERIES_TAGS), stored, include), study, include);
  json[Tag.StudyInstanceUID] = study[Tag.StudyInstanceUID]!;
  json[Tag.NumberOfSeriesRelatedInstances] = { vr: 'IS', Value: [row.numInstances] };
  json[Tag.RetrieveURL] = { vr: 'UR', Value: [`${root}/studies/${row.studyUid}/series/${row.seriesUid}`] };
  return sortedJson(json);
}

function instanceJson(row: InstanceRow, include: Include, root: string): string {
  const stored = JSON.parse(absolutizeBulkData(row.json, root)) as DicomJson;
  const series = JSON.parse(row.seriesJson) as DicomJson;
  const study = JSON.parse(row.studyJson) as DicomJson;
  const json = withIncluded(withIncluded(pick(stored, INSTANCE_TAGS), stored, include), { ...study, ...series }, include);
  json[Tag.StudyInstanceUID] = study[Tag.StudyInstanceUID]!;
  json[Tag.SeriesInstanceUID] = series[Tag.SeriesInstanceUID]!;
  if (series[Tag.Modality]) json[Tag.Modality] = series[Tag.Modality];
  json[Tag.RetrieveURL] = { vr: 'UR', Value: [`${root}/studies/${row.studyUid}/series/${row.seriesUid}/instances/${row.sopUid}`] };
  return sortedJson(json);
}

/** DICOM JSON lists attributes in tag order (PS3.18 F.2.1). */
function sortedJson(json: DicomJson): string {
  const sorted: DicomJson = {};
  for (const tag of Object.keys(json).sort()) sorted[tag] = json[tag]!;
  return JSON.stringify(sorted);
}

