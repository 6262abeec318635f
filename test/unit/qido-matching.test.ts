import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QueryError, type Level, type QidoQuery } from '../../src/catalog/qido.js';
import type { IndexRecord } from '../../src/catalog/record.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import type { DicomJson } from '../../src/dicom/json.js';
import { resolveAttribute } from '../../src/dicom/tags.js';

/** PS3.4 C.2.2.2 matching, run against a real SQLite index fed the way ingest feeds it. */

type Name = string | { Alphabetic: string; Ideographic?: string; Phonetic?: string };
type StudySpec = {
  name?: Name;
  id?: string;
  date?: string;
  time?: string;
  accession?: string;
  description?: string;
  referring?: string;
  series: Array<{ modality: string; number?: number; description?: string; instances: number[] }>;
};

const STUDIES = {
  muller: {
    name: 'Müller^Jürgen', id: 'PID-1', date: '20240115', time: '101530', accession: 'ACC_1', description: 'CT Thorax ÄRZTLICH', referring: 'Weiß^Anna',
    series: [{ modality: 'CT', number: 2, description: 'Lung ÖDEM', instances: [10, 1, 2] }, { modality: 'MR', number: 1, instances: [1] }],
  },
  mueller: { name: 'Mueller^Hans', id: 'pid-1', date: '20240116', time: '1015', accession: 'ACCX1', description: '100% contrast', series: [{ modality: 'CT', instances: [1] }] },
  greek: { name: 'Διονυσιος', date: '20231231', time: '235959', description: '1000 contrast', series: [{ modality: 'CR', instances: [1] }] },
  russian: { name: 'Иванов^Иван', date: '20240201', time: '101600', description: 'dir\\sub', series: [{ modality: 'MR', instances: [1] }] },
  japanese: {
    name: { Alphabetic: 'Yamada^Tarou', Ideographic: '山田^太郎', Phonetic: 'やまだ^たろう' }, date: '20240115', time: '080000',
    series: [{ modality: 'US', instances: [1] }],
  },
  doe: { name: 'Doe^Jane^^^', series: [{ modality: 'SR', instances: [1] }] },
  anonymous: { series: [{ modality: 'CT', instances: [1] }] },
} satisfies Record<string, StudySpec>;
type Label = keyof typeof STUDIES;

const labels = Object.keys(STUDIES) as Label[];
const studyUid = (label: Label) => `1.2.826.0.1.3680043.10.543.${labels.indexOf(label) + 1}`;
const seriesUid = (label: Label, i: number) => `${studyUid(label)}.${i + 1}`;
const sopUid = (label: Label, i: number, n: number) => `${seriesUid(label, i)}.${n}`;
const labelOf = new Map<string, string>();

function recordsOf(label: Label): IndexRecord[] {
  const s: StudySpec = STUDIES[label];
  const study: DicomJson = {};
  const texts: Array<[string, string, string | undefined]> = [
    ['00080020', 'DA', s.date], ['00080030', 'TM', s.time], ['00080050', 'SH', s.accession], ['00081030', 'LO', s.description],
    ['00100020', 'LO', s.id], ['0020000D', 'UI', studyUid(label)],
  ];
  for (const [tag, vr, value] of texts) if (value !== undefined) study[tag] = { vr, Value: [value] };
  if (s.referring) study['00080090'] = { vr: 'PN', Value: [{ Alphabetic: s.referring }] };
  if (s.name) study['00100010'] = { vr: 'PN', Value: [typeof s.name === 'string' ? { Alphabetic: s.name } : s.name] };
  labelOf.set(studyUid(label), label);
  return s.series.flatMap((series, i) => {
    labelOf.set(seriesUid(label, i), `${label}/${series.modality}`);
    return series.instances.map((n): IndexRecord => {
      labelOf.set(sopUid(label, i, n), `${label}/${series.modality}/${n}`);
      const json: DicomJson = {
        ...study,
        '00080016': { vr: 'UI', Value: ['1.2.840.10008.5.1.4.1.1.7'] },
        '00080018': { vr: 'UI', Value: [sopUid(label, i, n)] },
        '00080060': { vr: 'CS', Value: [series.modality] },
        '0020000E': { vr: 'UI', Value: [seriesUid(label, i)] },
        '00200013': { vr: 'IS', Value: [n] },
        ...(series.number === undefined ? {} : { '00200011': { vr: 'IS', Value: [series.number] } }),
        ...(series.description === undefined ? {} : { '0008103E': { vr: 'LO', Value: [series.description] } }),
      };
      const sop = sopUid(label, i, n);
      return {
        studyUid: studyUid(label), seriesUid: seriesUid(label, i), sopUid: sop, sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
        transferSyntaxUid: '1.2.840.10008.1.2.1', objectKey: `objects/${sop}.dcm`, size: 1, sha256: sop, inflated: false, frames: [], json,
      };
    });
  });
}

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

function query(level: Level, keys: Record<string, string>, more: Partial<QidoQuery> = {}): QidoQuery {
  return {
    level,
    keys: Object.entries(keys).map(([keyword, value]) => ({ tag: resolveAttribute(keyword)!.tag, keyword, value })),
    fuzzy: false,
    limit: 100,
    offset: 0,
    ...more,
  };
}
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
  const newestFirst = ['russian', 'mueller', 'muller', 'japanese', 'greek', 'doe', 'anonymous'];

  it('answers studies newest first, then by time, undated last, ties by UID', async () => {
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
