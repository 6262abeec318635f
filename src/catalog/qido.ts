import { aliasedTable, sql, type Column, type SQL } from 'drizzle-orm';
import { isValidUid } from '../dicom/uid.js';
import type { ColumnKey, IndexTables } from './index-tables.js';
import { foldText, normalizeTime, trimNameComponents } from './record.js';

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

/**
 * Values one list key may carry (a UID list, ModalitiesInStudy). Viewers ask for one study or a handful, and PS3.3
 * defines a few dozen modalities: 200 is far past both, and keeps a list of wildcard values (two levels of SQL
 * each) under SQLite's expression depth of 1000, where thousands of values used to fail the query.
 */
export const MAX_VALUES_PER_KEY = 200;
/** Words of one fuzzy person name: five components of a word or two each is ten; each word is one more LIKE. */
export const MAX_NAME_WORDS = 20;
/** PS3.5 6.2.1: alphabetic, ideographic and phonetic. */
const NAME_GROUPS = 3;

type Kind = 'uid' | 'text' | 'folded-text' | 'date' | 'time' | 'pn' | 'int' | 'modalities';
/** A matching key: the column (for names, one column per component group) and the rule that answers it. */
type Matchable = { [T in 'studies' | 'series' | 'instances']: { level: Level; table: T; columns: Array<ColumnKey<T>>; kind: Kind } }[
  'studies' | 'series' | 'instances'
];

const LEVEL_RANK: Record<Level, number> = { study: 0, series: 1, instance: 2 };
const study = (kind: Kind, ...columns: Array<ColumnKey<'studies'>>): Matchable => ({ level: 'study', table: 'studies', columns, kind });
const serie = (kind: Kind, ...columns: Array<ColumnKey<'series'>>): Matchable => ({ level: 'series', table: 'series', columns, kind });
const inst = (kind: Kind, ...columns: Array<ColumnKey<'instances'>>): Matchable => ({ level: 'instance', table: 'instances', columns, kind });

/** PS3.18 Table 10.6.1-5 matching keys and a few more clinics search by. */
const MATCHABLE: Record<string, Matchable> = {
  '0020000D': study('uid', 'studyUid'),
  '00100010': study('pn', 'patientNameAlphabetic', 'patientNameIdeographic', 'patientNamePhonetic'),
  '00100020': study('text', 'patientId'),
  '00100030': study('date', 'patientBirthDate'),
  '00100040': study('text', 'patientSex'),
  '00080020': study('date', 'studyDate'),
  '00080030': study('time', 'studyTime'),
  '00080050': study('text', 'accessionNumber'),
  '00200010': study('text', 'studyId'),
  // Descriptions are not PN, but people type them in any case: matched folded, like names.
  '00081030': study('folded-text', 'studyDescription'),
  '00080090': study('pn', 'referringPhysicianName'),
  // Matched on the Modality of the study's series, so that it is always current.
  '00080061': { level: 'study', table: 'series', columns: ['modality'], kind: 'modalities' },
  '0020000E': serie('uid', 'seriesUid'),
  '00080060': serie('text', 'modality'),
  '00200011': serie('int', 'seriesNumber'),
  '0008103E': serie('folded-text', 'seriesDescription'),
  '00080021': serie('date', 'seriesDate'),
  '00080031': serie('time', 'seriesTime'),
  '00180015': serie('text', 'bodyPartExamined'),
  '00400244': serie('date', 'performedProcedureStepStartDate'),
  '00080018': inst('uid', 'sopUid'),
  '00080016': inst('uid', 'sopClassUid'),
  '00200013': inst('int', 'instanceNumber'),
  '00280008': inst('int', 'numberOfFrames'),
  '00280010': inst('int', 'rows'),
  '00280011': inst('int', 'columns'),
};

/** Whether this server matches on a key at all; others can only be asked to be returned. */
export function isMatchingKey(tag: string): boolean {
  return tag in MATCHABLE;
}

/** Whether a key can narrow a search (a UID list key may then repeat, PS3.18 8.3.4.1). */
export function isUidListKey(tag: string): boolean {
  return MATCHABLE[tag]?.kind === 'uid';
}

/** An empty value or `*` is Universal Matching (PS3.4 C.2.2.2.3, C.2.2.2.4): a return key that narrows nothing. */
export function isUniversal(value: string): boolean {
  return /^\**$/.test(value.trim());
}

/**
 * WHERE conditions for a query over one dialect's tables, shared by both SQL dialects. LIKE carries an explicit
 * escape and must be case-sensitive, as in Postgres: case-insensitive keys are compared folded on both sides instead.
 * Built once per catalog: the columns of each key are looked up and rendered here (`render`), not per request.
 */
export function qidoConditions(t: IndexTables, render: (fragment: SQL) => SQL): (query: QidoQuery) => SQL[] {
  const columnsOf = (m: Matchable) => m.columns.map((key) => render(sql`${(t[m.table] as unknown as Record<string, Column>)[key]!}`));
  const keys = new Map(Object.entries(MATCHABLE).map(([tag, m]) => [tag, { ...m, columns: columnsOf(m) }]));
  // ModalitiesInStudy asks of the study's series, whichever series a series or instance search is at.
  const otherSeries = aliasedTable(t.series, 'm');
  const otherSeriesOfStudy = render(sql`FROM ${t.series} AS ${otherSeries} WHERE ${otherSeries.studyUid} = ${t.studies.studyUid}`);
  const otherModality = render(sql`${otherSeries.modality}`);
  const modalitiesOf = (any: (modality: SQL) => SQL) => sql`EXISTS (SELECT 1 ${otherSeriesOfStudy} AND (${any(otherModality)}))`;
  const studyUid = render(sql`${t.studies.studyUid}`);
  const seriesUid = render(sql`${t.series.seriesUid}`);
  return (query) => {
    const where: SQL[] = [];
    if (query.studyUid) where.push(sql`${studyUid} = ${query.studyUid}`);
    if (query.seriesUid) where.push(sql`${seriesUid} = ${query.seriesUid}`);
    for (const key of query.keys) {
      if (isUniversal(key.value)) continue;
      const m = keys.get(key.tag);
      const refuse = (why: string) => new QueryError(`${key.keyword} cannot be used as a matching key at ${query.level} level: ${why}`);
      if (!m) throw refuse('this server does not match on it (ask for it with includefield instead)');
      if (LEVEL_RANK[m.level] > LEVEL_RANK[query.level]) throw refuse(`it belongs to the ${m.level} level`);
      const condition = matchCondition(m, key, query.fuzzy, modalitiesOf);
      if (condition) where.push(condition);
    }
    return where;
  };
}

type Resolved = Omit<Matchable, 'columns'> & { columns: SQL[] };

function matchCondition(m: Resolved, key: MatchKey, fuzzy: boolean, modalitiesOf: (any: (modality: SQL) => SQL) => SQL): SQL | undefined {
  const value = key.value.trim();
  const col = m.columns[0]!;
  switch (m.kind) {
    case 'uid': {
      const uids = listValues(key, value);
      for (const uid of uids) if (!isValidUid(uid)) throw new QueryError(`${key.keyword}: "${uid}" is not a valid UID`);
      return sql`${col} IN (${sql.join(uids.map((u) => sql`${u}`), sql`, `)})`;
    }
    case 'text':
      return textMatch(col, value);
    case 'folded-text':
      return textMatch(col, foldText(value));
    case 'int': {
      if (!/^[+-]?\d+$/.test(value)) throw new QueryError(`${key.keyword}: "${value}" is not an integer`);
      // No IS or US value comes near 2^53; Postgres would refuse to compare a number its column cannot hold.
      return Number.isSafeInteger(Number(value)) ? sql`${col} = ${Number(value)}` : sql`1 = 0`;
    }
    case 'date':
      return rangeMatch(col, key, value, parseDate, 'YYYYMMDD');
    case 'time':
      return rangeMatch(col, key, value, parseTime, 'HHMMSS.FFFFFF');
    case 'modalities': {
      // Any of the listed modalities (PS3.4 C.6.1.1.3.1: ModalitiesInStudy matches if one of its values does).
      const modalities = listValues(key, value);
      return modalitiesOf((modality) => sql.join(modalities.map((v) => textMatch(modality, v)), sql` OR `));
    }
    case 'pn':
      return personNameMatch(m.columns, key.keyword, value, fuzzy);
  }
}

/** UID lists and several modalities come separated by backslash (DICOM) or comma (PS3.18 uid-list-match). */
function listValues(key: MatchKey, value: string): string[] {
  const values = value.split(/[\\,]/).map((v) => v.trim()).filter(Boolean);
  if (values.length === 0) throw new QueryError(`${key.keyword}: "${value}" lists no value`);
  if (values.length > MAX_VALUES_PER_KEY) {
    throw new QueryError(`${key.keyword} lists ${values.length} values; at most ${MAX_VALUES_PER_KEY} are matched in one query: split it into several searches`);
  }
  return values;
}

function textMatch(col: SQL, value: string): SQL {
  if (/[*?]/.test(value)) return sql`${col} LIKE ${wildcardToLike(value)} ESCAPE '\\'`;
  return sql`${col} = ${value}`;
}

/**
 * PS3.4 C.2.2.2.5 range matching, open at either end. A value given to the day, minute or second stands
 * for all of it: `1015` matches 10:15:00 to 10:15:59.999999, alone or as either bound.
 */
function rangeMatch(col: SQL, key: MatchKey, value: string, parse: (v: string) => string | undefined, shape: string): SQL {
  const bad = () => new QueryError(`${key.keyword}: "${value}" is not a ${shape} value or range (${shape}-${shape}, open ends allowed)`);
  const parts = value.split('-');
  if (parts.length > 2) throw bad();
  const [from, to] = parts.length === 1 ? [value, value] : (parts as [string, string]);
  if (from === '' && to === '') throw bad();
  const conditions: SQL[] = [];
  if (from) {
    const bound = parse(from);
    if (bound === undefined) throw bad();
    conditions.push(sql`${col} >= ${bound}`);
  }
  if (to) {
    const bound = parse(to);
    if (bound === undefined) throw bad();
    conditions.push(sql`${col} <= ${bound + '\uffff'}`);
  }
  return sql.join(conditions, sql` AND `);
}

function parseDate(v: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})$/.exec(v);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCMonth() === month - 1 && date.getUTCDate() === day ? v : undefined;
}

function parseTime(v: string): string | undefined {
  // PS3.5 TM: HH[MM[SS[.F{1,6}]]], 60 for a leap second; colons of the ACR-NEMA form tolerated.
  return /^([01]\d|2[0-3])(:?[0-5]\d(:?([0-5]\d|60)(\.\d{1,6})?)?)?$/.test(v) ? normalizeTime(v)! : undefined;
}

/**
 * PS3.4 C.2.2.2.1 and C.2.2.2.4 for PN, which leave case and wildcards to the implementation: folded (case-
 * and form-insensitive), `*` and `?`, matched against every component group, or against the groups a
 * query names with `=`. Fuzzy matching (PS3.18 8.3.4.2): each word of the query begins some name component,
 * in any order.
 */
function personNameMatch(groups: SQL[], keyword: string, value: string, fuzzy: boolean): SQL | undefined {
  const query = foldText(value);
  if (!query.includes('=')) {
    const name = trimNameComponents(query);
    return sql`(${sql.join(groups.map((g) => nameGroupMatch(g, keyword, name, fuzzy)), sql` OR `)})`;
  }
  const parts = query.split('=');
  if (parts.length > NAME_GROUPS) {
    throw new QueryError(`${keyword} has ${parts.length} component groups; a person name has at most ${NAME_GROUPS} (alphabetic=ideographic=phonetic)`);
  }
  const conditions = parts.flatMap((part, i) => {
    const name = trimNameComponents(part);
    if (isUniversal(name)) return [];
    // A group this index does not keep (a referring physician's ideographic name) cannot match.
    return [groups[i] ? nameGroupMatch(groups[i], keyword, name, fuzzy) : sql`1 = 0`];
  });
  return conditions.length ? sql`(${sql.join(conditions, sql` AND `)})` : undefined;
}

function nameGroupMatch(col: SQL, keyword: string, name: string, fuzzy: boolean): SQL {
  if (/[*?]/.test(name)) return sql`${col} LIKE ${wildcardToLike(name)} ESCAPE '\\'`;
  const words = name.split(/[\^ ,]+/).filter(Boolean);
  if (!fuzzy || words.length === 0) return sql`${col} = ${name}`;
  if (words.length > MAX_NAME_WORDS) {
    throw new QueryError(`${keyword} has ${words.length} words; at most ${MAX_NAME_WORDS} are matched fuzzily in one name: leave out some`);
  }
  const spaced = sql`(' ' || replace(${col}, '^', ' '))`;
  return sql`(${sql.join(words.map((w) => sql`${spaced} LIKE ${'% ' + escapeLike(w) + '%'} ESCAPE '\\'`), sql` AND `)})`;
}

function escapeLike(text: string): string {
  return text.replace(/[\\%_]/g, (c) => '\\' + c);
}

function wildcardToLike(query: string): string {
  return escapeLike(query).replace(/\*/g, '%').replace(/\?/g, '_');
}
