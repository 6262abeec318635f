import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError, type QidoQuery } from '../../src/catalog/qido.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { labelOf, labels, query, recordsOf, seriesUid, studyUid } from '../fixtures/qido-studies.js';

/** PS3.4 C.2.2.2 matching, run against a real SQLite index fed the way ingest feeds it. */

let dir: string;
let catalog: SqliteCatalog;

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacs-qido-'));
  catalog = SqliteCatalog.open(dir);
  // Indexed in an order unlike the answer's, so that no test passes on insertion order.
  for (const label of [...labels].reverse()) await catalog.index(recordsOf(label), false);
});
afterAll(async () => {
  await catalog?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

const studies = async (keys: Record<string, string>, more?: Partial<QidoQuery>) =>
  (await catalog.studies(query('study', keys, more))).map((r) => labelOf.get(r.studyUid)!);
const series = async (keys: Record<string, string>, more?: Partial<QidoQuery>) =>
  (await catalog.series(query('series', keys, more))).map((r) => labelOf.get(r.seriesUid)!);
const instances = async (keys: Record<string, string>, more?: Partial<QidoQuery>) =>
  (await catalog.instances(query('instance', keys, more))).map((r) => labelOf.get(r.sopUid)!);
/** Which studies match, whatever the order. */
const matching = async (keys: Record<string, string>, more?: Partial<QidoQuery>) => (await studies(keys, more)).sort();
const fuzzy = { fuzzy: true };

describe('single values, wildcards and LIKE specials', () => {
  it('matches a text key exactly and case-sensitively', async () => {
    expect(await matching({ PatientID: 'PID-1' })).toEqual(['muller']);
    expect(await matching({ AccessionNumber: 'ACC' })).toEqual([]);
  });

  it('keeps wildcards case-sensitive outside person names', async () => {
    expect(await matching({ PatientID: 'PID*' })).toEqual(['muller']);
    expect(await matching({ PatientID: 'pid*' })).toEqual(['mueller']);
  });

  it('reads * as any run and ? as exactly one character', async () => {
    expect(await matching({ AccessionNumber: 'ACC?1' })).toEqual(['mueller', 'muller']);
    expect(await matching({ AccessionNumber: 'A*1' })).toEqual(['mueller', 'muller']);
    expect(await matching({ AccessionNumber: 'ACC?' })).toEqual([]);
  });

  it('takes %, _ and \\ in a value literally', async () => {
    expect(await matching({ AccessionNumber: 'ACC_*' })).toEqual(['muller']);
    expect(await matching({ StudyDescription: '100%*' })).toEqual(['mueller']);
    expect(await matching({ StudyDescription: 'dir\\s*' })).toEqual(['russian']);
    expect(await matching({ StudyDescription: 'dir\\sub' })).toEqual(['russian']);
  });

  it('matches descriptions in any case, non-ASCII letters included', async () => {
    expect(await matching({ StudyDescription: 'ct thorax ärztlich' })).toEqual(['muller']);
    expect(await matching({ StudyDescription: '*ÄRZTLICH' })).toEqual(['muller']);
    expect(await series({ SeriesDescription: 'lung öd*' })).toEqual(['muller/CT']);
  });

  it('treats an empty value and * as universal, names or no names', async () => {
    const all = await matching({});
    expect(all).toHaveLength(labels.length);
    expect(await matching({ PatientName: '*' })).toEqual(all);
    expect(await matching({ PatientName: '' })).toEqual(all);
    expect(await matching({ StudyDate: '' })).toEqual(all);
  });

  it('matches integers by value', async () => {
    expect(await series({ SeriesNumber: '2' })).toEqual(['muller/CT']);
    expect(await instances({ InstanceNumber: '10' })).toEqual(['muller/CT/10']);
    await expect(series({ SeriesNumber: 'two' })).rejects.toThrow(QueryError);
  });
});

describe('date and time ranges', () => {
  it('matches a single date, closed ranges and ranges open at either end', async () => {
    expect(await matching({ StudyDate: '20240115' })).toEqual(['japanese', 'muller']);
    expect(await matching({ StudyDate: '20240115-20240116' })).toEqual(['japanese', 'mueller', 'muller']);
    expect(await matching({ StudyDate: '20240116-' })).toEqual(['mueller', 'russian']);
    expect(await matching({ StudyDate: '-20231231' })).toEqual(['greek']);
  });

  it('refuses malformed dates and ranges', async () => {
    for (const bad of ['2024-01-15', '20241301', '20240230', '2024011', '-', '20240101-20240102-20240103', 'today']) {
      await expect(studies({ StudyDate: bad }), bad).rejects.toThrow(QueryError);
    }
    await expect(studies({ StudyDate: '2024-01-15' })).rejects.toThrow(/YYYYMMDD/);
  });

  it('takes a time given to the minute as the whole minute, alone or as a bound', async () => {
    // muller 10:15:30, mueller stored as 1015, russian 10:16:00, japanese 08:00:00, greek 23:59:59
    expect(await matching({ StudyTime: '1015' })).toEqual(['mueller', 'muller']);
    expect(await matching({ StudyTime: '1015-1015' })).toEqual(['mueller', 'muller']);
    expect(await matching({ StudyTime: '-1015' })).toEqual(['japanese', 'mueller', 'muller']);
    expect(await matching({ StudyTime: '101531-' })).toEqual(['greek', 'russian']);
    expect(await matching({ StudyTime: '08' })).toEqual(['japanese']);
    expect(await matching({ StudyTime: '10:15-10:16' })).toEqual(['mueller', 'muller', 'russian']);
    expect(await matching({ StudyTime: '101530.5-' })).toEqual(['greek', 'russian']);
  });

  it('refuses malformed times', async () => {
    for (const bad of ['2500', '1060', '10-11-12', '1', 'noon', '101530.1234567']) {
      await expect(studies({ StudyTime: bad }), bad).rejects.toThrow(QueryError);
    }
  });
});

describe('UID lists', () => {
  it('matches any UID of a list separated by backslash or comma', async () => {
    expect(await matching({ StudyInstanceUID: `${studyUid('muller')}\\${studyUid('greek')}` })).toEqual(['greek', 'muller']);
    expect(await matching({ StudyInstanceUID: `${studyUid('muller')}, ${studyUid('greek')}` })).toEqual(['greek', 'muller']);
    expect(await series({ SeriesInstanceUID: `${seriesUid('muller', 1)},${seriesUid('russian', 0)}` })).toEqual(['muller/MR', 'russian/MR']);
  });

  it('refuses a malformed UID and an empty list', async () => {
    await expect(studies({ StudyInstanceUID: `${studyUid('muller')}\\1.2.abc` })).rejects.toThrow(/"1\.2\.abc" is not a valid UID/);
    await expect(studies({ StudyInstanceUID: ',' })).rejects.toThrow(QueryError);
  });

  it('narrows to the study in the URL, even against a query key', async () => {
    expect(await series({}, { studyUid: studyUid('muller') })).toEqual(['muller/MR', 'muller/CT']);
    expect(await series({ StudyInstanceUID: studyUid('greek') }, { studyUid: studyUid('muller') })).toEqual([]);
  });
});

describe('person names', () => {
  it('ignores case, accents kept, in Latin, Greek and Cyrillic', async () => {
    expect(await matching({ PatientName: 'müller^jürgen' })).toEqual(['muller']);
    expect(await matching({ PatientName: 'MÜLLER^JÜRGEN' })).toEqual(['muller']);
    expect(await matching({ PatientName: 'ΔΙΟΝΥΣΙΟΣ' })).toEqual(['greek']);
    expect(await matching({ PatientName: 'διονυσιοσ' })).toEqual(['greek']);
    expect(await matching({ PatientName: 'ИВАНОВ^ИВАН' })).toEqual(['russian']);
    expect(await matching({ PatientName: 'иванов*' })).toEqual(['russian']);
  });

  it('folds a final sigma before a wildcard', async () => {
    expect(await matching({ PatientName: 'ΔΙΟΝΥΣ*' })).toEqual(['greek']);
  });

  it('matches the whole name unless fuzzy, with * and ? over Unicode characters', async () => {
    expect(await matching({ PatientName: 'Müller' })).toEqual([]);
    expect(await matching({ PatientName: 'mü*' })).toEqual(['muller']);
    expect(await matching({ PatientName: 'M?ller*' })).toEqual(['muller']);
    expect(await matching({ PatientName: '*ller^*' })).toEqual(['mueller', 'muller']);
    expect(await matching({ PatientName: 'D?e^Jane' })).toEqual(['doe']);
    expect(await matching({ PatientName: '山?^*' })).toEqual(['japanese']);
  });

  it('ignores trailing empty components on either side', async () => {
    expect(await matching({ PatientName: 'Doe^Jane' })).toEqual(['doe']);
    expect(await matching({ PatientName: 'doe^jane^^' })).toEqual(['doe']);
    expect(await matching({ PatientName: 'Doe^Jane^=' })).toEqual(['doe']);
  });

  it('matches any component group, or the groups named with =', async () => {
    expect(await matching({ PatientName: '山田^太郎' })).toEqual(['japanese']);
    expect(await matching({ PatientName: 'やまだ^たろう' })).toEqual(['japanese']);
    expect(await matching({ PatientName: 'Yamada^Tarou=山田^太郎' })).toEqual(['japanese']);
    expect(await matching({ PatientName: 'Yamada^Tarou=山本^太郎' })).toEqual([]);
    expect(await matching({ PatientName: '=山田^太郎' })).toEqual(['japanese']);
    expect(await matching({ PatientName: '*=山?^*' })).toEqual(['japanese']);
    expect(await matching({ PatientName: '==やまだ*' })).toEqual(['japanese']);
    expect(await matching({ PatientName: '=Yamada^Tarou' })).toEqual([]);
  });

  it('with fuzzymatching, finds names whose components begin with each word, in any order', async () => {
    expect(await matching({ PatientName: 'jürgen müller' }, fuzzy)).toEqual(['muller']);
    expect(await matching({ PatientName: 'JÜR' }, fuzzy)).toEqual(['muller']);
    expect(await matching({ PatientName: 'Müller' }, fuzzy)).toEqual(['muller']);
    expect(await matching({ PatientName: 'ürgen' }, fuzzy)).toEqual([]);
    expect(await matching({ PatientName: 'jane' }, fuzzy)).toEqual(['doe']);
    expect(await matching({ PatientName: '太郎' }, fuzzy)).toEqual(['japanese']);
    expect(await matching({ PatientName: 'jürgen' })).toEqual([]);
  });

  it('matches the referring physician as a person name', async () => {
    expect(await matching({ ReferringPhysicianName: 'WEISS^ANNA' })).toEqual([]);
    expect(await matching({ ReferringPhysicianName: 'weiß^anna' })).toEqual(['muller']);
    expect(await matching({ ReferringPhysicianName: 'anna' }, fuzzy)).toEqual(['muller']);
    // Only the alphabetic group of a referring physician is indexed: a query for another group finds nothing.
    expect(await matching({ ReferringPhysicianName: '=Weiß' })).toEqual([]);
  });
});

describe('modalities and counts', () => {
  it('finds a study by any modality of its series, listed or wildcarded', async () => {
    expect(await matching({ ModalitiesInStudy: 'MR' })).toEqual(['muller', 'russian']);
    expect(await matching({ ModalitiesInStudy: 'CR\\US' })).toEqual(['greek', 'japanese']);
    expect(await matching({ ModalitiesInStudy: 'CR,US' })).toEqual(['greek', 'japanese']);
    expect(await matching({ ModalitiesInStudy: 'M*' })).toEqual(['muller', 'russian']);
    expect(await matching({ ModalitiesInStudy: 'mr' })).toEqual([]);
  });

  it('keeps the modalities and the series and instance counts of each study', async () => {
    const [muller] = await catalog.studies(query('study', { StudyInstanceUID: studyUid('muller') }));
    expect(muller).toMatchObject({ modalities: 'CT\\MR', numSeries: 2, numInstances: 4 });
    const ct = await catalog.series(query('series', { SeriesInstanceUID: seriesUid('muller', 0) }));
    expect(ct.map((s) => s.numInstances)).toEqual([3]);
    expect(ct[0]!.study).toMatchObject({ studyUid: studyUid('muller'), numSeries: 2, numInstances: 4, modalities: 'CT\\MR' });
  });
});

describe('levels', () => {
  it('takes study keys in a series search and series keys in an instance search', async () => {
    expect(await series({ Modality: 'CT', PatientName: 'mü*' })).toEqual(['muller/CT']);
    expect(await instances({ Modality: 'MR' })).toEqual(['muller/MR/1', 'russian/MR/1']);
    expect(await instances({ PatientID: 'PID-1', Modality: 'CT' })).toEqual(['muller/CT/1', 'muller/CT/2', 'muller/CT/10']);
  });

  it('refuses a key of a lower level, or one it does not match on, with the reason', async () => {
    await expect(studies({ Modality: 'CT' })).rejects.toThrow(/Modality cannot be used as a matching key at study level: it belongs to the series level/);
    await expect(series({ SOPInstanceUID: '1.2.3' })).rejects.toThrow(/SOPInstanceUID cannot be used as a matching key at series level: it belongs to the instance level/);
    await expect(studies({ InstitutionName: 'General' })).rejects.toThrow(/does not match on it/);
  });

  it('lets a universal key of any level through as a return key', async () => {
    expect(await matching({ InstitutionName: '', SOPInstanceUID: '*' })).toHaveLength(labels.length);
  });
});

describe('order and paging', () => {
  const newestFirst = ['russian', 'mueller', 'muller', 'japanese', 'greek', 'anonymous', 'doe'];

  it('answers studies newest first, then by time, undated last, ties by UID from the highest (as the order index holds them)', async () => {
    expect(await studies({})).toEqual(newestFirst);
  });

  it('answers series by number and instances by number, not as text', async () => {
    expect(await series({ StudyInstanceUID: studyUid('muller') })).toEqual(['muller/MR', 'muller/CT']);
    expect(await instances({ SeriesInstanceUID: seriesUid('muller', 0) })).toEqual(['muller/CT/1', 'muller/CT/2', 'muller/CT/10']);
  });

  it('pages through the same order with limit and offset', async () => {
    const pages: string[] = [];
    for (let offset = 0; offset < labels.length + 2; offset += 2) pages.push(...(await studies({}, { limit: 2, offset })));
    expect(pages).toEqual(newestFirst);
    expect(await studies({}, { limit: 0 })).toEqual([]);
    expect(await studies({}, { offset: 100 })).toEqual([]);
    expect(await instances({ PatientID: 'PID-1' }, { limit: 2, offset: 1 })).toEqual(['muller/CT/2', 'muller/CT/10']);
  });
});
