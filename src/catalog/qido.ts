import { sql, type SQL } from 'drizzle-orm';
import { isValidUid } from '../dicom/uid.js';
import { normalizeTime } from './record.js';

export type Level = 'study' | 'series' | 'instance';
export type MatchKey = { tag: string; keyword: string; value: string };
export type QidoQuery = {
  level: Level;
  studyUid?: string;
  seriesUid?: string;
  keys: MatchKey[];
  fuzzy: boolean;
  limit: number;
  offset: number;
};

/** A bad query value: the route answers 400 with this message. */
export class QueryError extends Error {}

type Kind = 'uid' | 'text' | 'ci-text' | 'date' | 'time' | 'pn' | 'int' | 'modalities';
type Matchable = { level: Level; table: 'studies' | 'series' | 'instances'; column: string; kind: Kind };

const LEVEL_RANK: Record<Level, number> = { study: 0, series: 1, instance: 2 };
const study = (column: string, kind: Kind): Matchable => ({ level: 'study', table: 'studies', column, kind });
const serie = (column: string, kind: Kind): Matchable => ({ level: 'series', table: 'series', column, kind });
const inst = (column: string, kind: Kind): Matchable => ({ level: 'instance', table: 'instances', column, kind });

/** PS3.18 Tables 10.6.1-5 to 10.6.1-7 matching keys, each with the column and rule that answers it. */
const MATCHABLE: Record<string, Matchable> = {
  '0020000D': study('study_uid', 'uid'),
  '00100010': study('patient_name', 'pn'),
  '00100020': study('patient_id', 'text'),
  '00100030': study('patient_birth_date', 'date'),
  '00100040': study('patient_sex', 'text'),
  '00080020': study('study_date', 'date'),
  '00080030': study('study_time', 'time'),
  '00080050': study('accession_number', 'text'),
  '00200010': study('study_id', 'text'),
  '00081030': study('study_description', 'ci-text'),
  '00080090': study('referring_physician_name', 'ci-text'),
  '00080061': study('modalities', 'modalities'),
  '0020000E': serie('series_uid', 'uid'),
  '00080060': serie('modality', 'text'),
  '00200011': serie('series_number', 'int'),
  '0008103E': serie('series_description', 'ci-text'),
  '00080021': serie('series_date', 'date'),
  '00080031': serie('series_time', 'time'),
  '00180015': serie('body_part_examined', 'text'),
  '00400244': serie('pps_start_date', 'date'),
  '00080018': inst('sop_uid', 'uid'),
  '00080016': inst('sop_class_uid', 'uid'),
  '00200013': inst('instance_number', 'int'),
  '00280008': inst('number_of_frames', 'int'),
  '00280010': inst('rows', 'int'),
  '00280011': inst('columns', 'int'),
};



/** WHERE conditions for a query, shared by both SQL dialects (LIKE with an explicit escape). */
export function whereClauses(query: QidoQuery): SQL[] {
  const where: SQL[] = [];
  if (query.studyUid) where.push(sql`studies.study_uid = ${query.studyUid}`);
  if (query.seriesUid) where.push(sql`series.series_uid = ${query.seriesUid}`);
  for (const key of query.keys) {
    const m = MATCHABLE[key.tag];
    if (!m || LEVEL_RANK[m.level] > LEVEL_RANK[query.level]) {
      throw new QueryError(`${key.keyword} cannot be used as a matching key at ${query.level} level`);
    }
    const condition = matchCondition(m, key, query.fuzzy);
    if (condition) where.push(condition);
  }
  return where;
}

function matchCondition(m: Matchable, key: MatchKey, fuzzy: boolean): SQL | undefined {
  const value = key.value.trim();
  if (value === '' || value === '*') return undefined; // universal match
  const col = sql.raw(`${m.table}.${m.column}`);
  switch (m.kind) {
    case 'uid': {
      const uids = value.split(/[\\,]/).map((u) => u.trim()).filter(Boolean);
      for (const uid of uids) if (!isValidUid(uid)) throw new QueryError(`${key.keyword}: "${uid}" is not a valid UID`);
      return sql`${col} IN (${sql.join(uids.map((u) => sql`${u}`), sql`, `)})`;
    }
    case 'text':
      return textMatch(col, value, false);
    case 'ci-text':
      return textMatch(col, value, true);
    case 'int': {
      if (!/^[+-]?\d+$/.test(value)) throw new QueryError(`${key.keyword}: "${value}" is not an integer`);
      return sql`${col} = ${Number(value)}`;
    }
    case 'date':
      return rangeMatch(col, key, value, /^\d{8}$/, (v) => v, 'YYYYMMDD');
    case 'time':
      return rangeMatch(col, key, value, /^\d{2}(:?\d{2}(:?\d{2}(\.\d{1,6})?)?)?$/, (v) => normalizeTime(v)!, 'HHMMSS.FFFFFF');
    case 'modalities': {
      const modalities = value.split(/[\\,]/).map((s) => s.trim()).filter(Boolean);
      return sql`EXISTS (SELECT 1 FROM series m WHERE m.study_uid = studies.study_uid AND m.modality IN (${sql.join(
        modalities.map((x) => sql`${x}`),
        sql`, `,
      )}))`;
    }
    case 'pn':
      return personNameMatch(value, fuzzy);
  }
}

function textMatch(col: SQL, value: string, caseInsensitive: boolean): SQL {
  const target = caseInsensitive ? sql`lower(${col})` : col;
  const v = caseInsensitive ? value.toLowerCase() : value;
  if (/[*?]/.test(v)) return sql`${target} LIKE ${wildcardToLike(v)} ESCAPE '\\'`;
  return sql`${target} = ${v}`;
}

function rangeMatch(col: SQL, key: MatchKey, value: string, form: RegExp, normalize: (v: string) => string, shape: string): SQL {
  const parts = value.split('-');
  const bad = () => new QueryError(`${key.keyword}: "${value}" is not a ${shape} value or range (${shape}-${shape}, open ends allowed)`);
  if (parts.length === 1) {
    if (!form.test(value)) throw bad();
    return sql`${col} = ${normalize(value)}`;
  }
  const [from, to] = parts;
  if (parts.length !== 2 || (from === '' && to === '') || (from && !form.test(from)) || (to && !form.test(to!))) throw bad();
  const conditions: SQL[] = [];
  if (from) conditions.push(sql`${col} >= ${normalize(from)}`);
  // An upper bound given to the minute or second includes the whole of it.
  if (to) conditions.push(sql`${col} <= ${normalize(to) + '\uffff'}`);
  return sql.join(conditions, sql` AND `);
}

const NAME_GROUPS = ['patient_name_alphabetic', 'patient_name_ideographic', 'patient_name_phonetic'] as const;

/**
 * PS3.4 C.2.2.2.1 for PN: case-insensitive, wildcards, against each component group. A query with '='
 * names its groups. Fuzzy matching (PS3.4 C.2.2.2.1.1, left to the implementation): each word of the
 * query must begin some name component, in any order.
 */
function personNameMatch(value: string, fuzzy: boolean): SQL {
  const query = value.normalize('NFC').toLowerCase().replace(/\^+$/, '');
  if (query.includes('=')) {
    const groups = query.split('=');
    const conditions = groups.flatMap((g, i) => (g && g !== '*' && NAME_GROUPS[i] ? [nameGroupMatch(NAME_GROUPS[i], g, fuzzy)] : []));
    return conditions.length ? sql`(${sql.join(conditions, sql` AND `)})` : sql`1 = 1`;
  }
  return sql`(${sql.join(NAME_GROUPS.map((g) => nameGroupMatch(g, query, fuzzy)), sql` OR `)})`;
}

function nameGroupMatch(group: string, query: string, fuzzy: boolean): SQL {
  const col = sql.raw(`studies.${group}`);
  if (fuzzy && !/[*?]/.test(query)) {
    const words = query.split(/[\^ ,]+/).filter(Boolean);
    const spaced = sql`(' ' || replace(${col}, '^', ' '))`;
    return sql`(${sql.join(words.map((w) => sql`${spaced} LIKE ${'% ' + escapeLike(w) + '%'} ESCAPE '\\'`), sql` AND `)})`;
  }
  if (/[*?]/.test(query)) return sql`${col} LIKE ${wildcardToLike(query)} ESCAPE '\\'`;
  return sql`${col} = ${query}`;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => '\\' + c);
}

export function wildcardToLike(query: string): string {
  return escapeLike(query).replace(/\*/g, '%').replace(/\?/g, '_');
}
