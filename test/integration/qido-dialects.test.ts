import { readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Catalog } from '../../src/catalog/catalog.js';
import { PgCatalog } from '../../src/catalog/pg.js';
import type { Level, QidoQuery } from '../../src/catalog/qido.js';
import { SqliteCatalog } from '../../src/catalog/sqlite.js';
import { newUid } from '../../src/dicom/write.js';
import { labels, query, recordsOf, seriesUid, studyUid } from '../fixtures/qido-studies.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * The promise: the same data indexed in SQLite and in Postgres answers every query alike, rows and order.
 * The Postgres database sorts text by a linguistic locale where the machine has one, so that only byte order holds.
 */

let postgres: TestPostgres;
beforeAll(async () => {
  postgres = await startPostgres();
});
afterAll(async () => {
  await postgres?.close();
});

type Answer = { rows: unknown } | { error: string };
type Case = [Level, Record<string, string>, Partial<QidoQuery>?];

async function answer(catalog: Catalog, [level, keys, more]: Case): Promise<Answer> {
  const q = query(level, keys, more);
  try {
    return { rows: await (level === 'study' ? catalog.studies(q) : level === 'series' ? catalog.series(q) : catalog.instances(q)) };
  } catch (e) {
    return { error: `${(e as Error).constructor.name}: ${(e as Error).message}` };
  }
}

describe('the matching cases of test/unit/qido-matching.test.ts, on both dialects', () => {
  let sqliteDir: string;
  let sqlite: SqliteCatalog;
  let pg: PgCatalog;

  beforeAll(async () => {
    sqliteDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-dialects-'));
    sqlite = SqliteCatalog.open(sqliteDir);
    pg = await PgCatalog.open(await postgres.createDatabase());
    for (const label of [...labels].reverse()) {
      for (const catalog of [sqlite, pg]) expect((await catalog.index(recordsOf(label), false)).outcomes).not.toContain('conflict');
    }
  });
  afterAll(async () => {
    await sqlite?.close();
    await pg?.close();
    await fs.rm(sqliteDir, { recursive: true, force: true });
  });

  const study = (keys: Record<string, string>, more?: Partial<QidoQuery>): Case => ['study', keys, more];
  const series = (keys: Record<string, string>, more?: Partial<QidoQuery>): Case => ['series', keys, more];
  const instance = (keys: Record<string, string>, more?: Partial<QidoQuery>): Case => ['instance', keys, more];
  const fuzzy = { fuzzy: true };
  const names = ['müller^jürgen', 'MÜLLER^JÜRGEN', 'ΔΙΟΝΥΣΙΟΣ', 'διονυσιοσ', 'ИВАНОВ^ИВАН', 'иванов*', 'ΔΙΟΝΥΣ*', 'Müller', 'mü*', 'M?ller*', '*ller^*',
    'D?e^Jane', '山?^*', 'Doe^Jane', 'doe^jane^^', 'Doe^Jane^=', '山田^太郎', 'やまだ^たろう', 'Yamada^Tarou=山田^太郎', 'Yamada^Tarou=山本^太郎', '=山田^太郎',
    '*=山?^*', '==やまだ*', '=Yamada^Tarou', '*', ''];
  const cases: Record<string, Case[]> = {
    'text, wildcards and LIKE specials': [
      ...['PID-1', 'PID*', 'pid*', 'P?D-1', '*'].map((v) => study({ PatientID: v })),
      ...['ACC', 'ACC?1', 'A*1', 'ACC?', 'ACC_*', 'ACC%', '*1'].map((v) => study({ AccessionNumber: v })),
      ...['100%*', 'dir\\s*', 'dir\\sub', 'ct thorax ärztlich', '*ÄRZTLICH', '1000 contrast', '*contrast'].map((v) => study({ StudyDescription: v })),
      series({ SeriesDescription: 'lung öd*' }),
      series({ SeriesNumber: '2' }),
      series({ SeriesNumber: 'two' }),
      instance({ InstanceNumber: '10' }),
      instance({ InstanceNumber: '99999999999999999999' }),
    ],
    'date and time ranges': [
      ...['20240115', '20240115-20240116', '20240116-', '-20231231', '', '2024-01-15', '20241301', '20240230', '2024011', '-', '20240101-20240102-20240103', 'today'].map((v) => study({ StudyDate: v })),
      ...['1015', '1015-1015', '-1015', '101531-', '08', '10:15-10:16', '101530.5-', '2500', '1060', '10-11-12', '1', 'noon', '101530.1234567'].map((v) => study({ StudyTime: v })),
    ],
    'UID lists': [
      study({ StudyInstanceUID: `${studyUid('muller')}\\${studyUid('greek')}` }),
      study({ StudyInstanceUID: `${studyUid('muller')}, ${studyUid('greek')}` }),
      study({ StudyInstanceUID: `${studyUid('muller')}\\1.2.abc` }),
      study({ StudyInstanceUID: ',' }),
      series({ SeriesInstanceUID: `${seriesUid('muller', 1)},${seriesUid('russian', 0)}` }),
      series({}, { studyUid: studyUid('muller') }),
      series({ StudyInstanceUID: studyUid('greek') }, { studyUid: studyUid('muller') }),
    ],
    'person names in several scripts and groups': [
      ...names.map((v) => study({ PatientName: v })),
      ...['jürgen müller', 'JÜR', 'Müller', 'ürgen', 'jane', '太郎'].map((v) => study({ PatientName: v }, fuzzy)),
      study({ PatientName: 'jürgen' }),
      ...['WEISS^ANNA', 'weiß^anna', '=Weiß'].map((v) => study({ ReferringPhysicianName: v })),
      study({ ReferringPhysicianName: 'anna' }, fuzzy),
    ],
    'modalities, levels and refusals': [
      ...['MR', 'CR\\US', 'CR,US', 'M*', 'mr'].map((v) => study({ ModalitiesInStudy: v })),
      series({ Modality: 'CT', PatientName: 'mü*' }),
      instance({ Modality: 'MR' }),
      instance({ PatientID: 'PID-1', Modality: 'CT' }),
      study({ Modality: 'CT' }),
      series({ SOPInstanceUID: '1.2.3' }),
      study({ InstitutionName: 'General' }),
      study({ InstitutionName: '', SOPInstanceUID: '*' }),
    ],
    'order and paging': [
      study({}),
      series({}),
      instance({}),
      series({ StudyInstanceUID: studyUid('muller') }),
      instance({ SeriesInstanceUID: seriesUid('muller', 0) }),
      ...[0, 2, 4, 6, 8].map((offset) => study({}, { limit: 2, offset })),
      ...[0, 3, 6].map((offset) => instance({}, { limit: 3, offset })),
      study({}, { limit: 0 }),
      study({}, { offset: 100 }),
      instance({ PatientID: 'PID-1' }, { limit: 2, offset: 1 }),
    ],
  };

  for (const [group, list] of Object.entries(cases)) {
    it(`answers alike: ${group}`, async () => {
      let found = 0;
      for (const c of list) {
        const [fromSqlite, fromPg] = [await answer(sqlite, c), await answer(pg, c)];
        expect(fromPg, JSON.stringify(c)).toEqual(fromSqlite);
        if ('rows' in fromSqlite && (fromSqlite.rows as unknown[]).length > 0) found++;
      }
      // Not a comparison of empty answers.
      expect(found).toBeGreaterThan(list.length / 3);
    });
  }

  it('answers the stored instances, representative images, checksums and objects alike', async () => {
    for (const label of labels) {
      const scope = { studyUid: studyUid(label) };
      expect(await pg.storedInstances(scope), label).toEqual(await sqlite.storedInstances(scope));
      expect(await pg.representativeImage(scope), label).toEqual(await sqlite.representativeImage(scope));
      expect(await pg.checksums(scope), label).toEqual(await sqlite.checksums(scope));
    }
    expect(await pg.representativeImage({ studyUid: studyUid('muller') })).toMatchObject({ seriesUid: seriesUid('muller', 1) });
    const all = async (catalog: Catalog) => {
      const objects = [];
      for await (const o of catalog.allObjects()) objects.push(o);
      return objects;
    };
    expect(await all(pg)).toEqual(await all(sqlite));
    const sops = (await all(sqlite)).map((o) => o.sopUid);
    expect(await pg.checksumsOf(sops)).toEqual(await sqlite.checksumsOf(sops));
  });

  it('decides duplicates, conflicts and replacements alike', async () => {
    const [original] = recordsOf('greek');
    const changed = { ...original!, sha256: 'changed', json: { ...original!.json, '00100010': { vr: 'PN', Value: [{ Alphabetic: 'Papadopoulos^Nikos' }] } } };
    for (const [records, overwrite, outcomes] of [
      [[original!], false, ['duplicate']],
      [[changed], false, ['conflict']],
      [[changed, changed], true, ['stored', 'duplicate']],
    ] as const) {
      for (const catalog of [sqlite, pg]) expect((await catalog.index([...records], overwrite)).outcomes).toEqual(outcomes);
    }
    const renamed = study({ PatientName: 'papadopoulos*' });
    expect(await answer(pg, renamed)).toEqual(await answer(sqlite, renamed));
    expect(await pg.studies(query('study', { PatientName: 'papadopoulos*' }))).toHaveLength(1);
  });

  it('removes and recounts alike', async () => {
    const scope = { studyUid: studyUid('muller'), seriesUid: seriesUid('muller', 0) };
    const [fromSqlite, fromPg] = [await sqlite.remove(scope), await pg.remove(scope)];
    expect(fromPg).toEqual(fromSqlite);
    expect(fromSqlite).toMatchObject({ studies: 0, series: 1, instances: 3 });
    for (const c of [study({}), series({}), study({ ModalitiesInStudy: 'CT' })]) expect(await answer(pg, c)).toEqual(await answer(sqlite, c));
    const [left] = await pg.studies(query('study', { StudyInstanceUID: studyUid('muller') }));
    expect(left).toMatchObject({ modalities: 'MR', numSeries: 1, numInstances: 1 });
  });
});

type Fixture = { path: string; studyUID: string; patientNameUtf8: string; specificCharacterSet?: string };

describe('the QIDO-RS requests of qido.test.ts and the character-set searches of dicomweb.test.ts, over HTTP', () => {
  const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
  const realTool: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
  // As qido.test.ts stores them.
  const mueller = { studyUID: newUid(), patientName: 'Müller^Jürgen', patientID: 'QIDO-1', studyDescription: 'Herz ÄRZTLICH' };
  const [ct, mr] = [newUid(), newUid()];
  const doe = { studyUID: newUid(), patientName: 'Doe^Jane', patientID: 'QIDO-2', studyDate: '20230101', extra: [{ tag: '00080201', vr: 'SH', value: '+0100' }] };
  const unknown = { studyUID: newUid(), patientName: 'Roe^Rick', patientID: 'QIDO-3', studyDate: '20220101', extra: [{ tag: '00080060', vr: 'CS', value: '' }] };
  const files = [
    ...syntheticSeries(2, { ...mueller, seriesUID: ct, seriesNumber: 1 }),
    syntheticInstance({ ...mueller, seriesUID: mr, modality: 'MR', seriesNumber: 2 }),
    syntheticInstance({ ...doe, modality: 'CR' }),
    syntheticInstance(unknown),
    ...realTool.map((f) => readFileSync(path.join(FIXTURES, f.path))),
  ];
  let onSqlite: RunningServer;
  let onPg: RunningServer;

  beforeAll(async () => {
    const url = await postgres.createDatabase();
    [onSqlite, onPg] = await Promise.all([startServer(), startServer({ env: { PACS_DATABASE_URL: url } })]);
    for (const server of [onSqlite, onPg]) {
      const response = await stow(server.dicomweb, files);
      expect(response.status, await response.text()).toBe(200);
    }
  });
  afterAll(async () => {
    await Promise.all([onSqlite?.stop(), onPg?.stop()]);
  });

  /** Status, Warning and body, with each server's own address taken out of the URLs it answers. */
  async function http(server: RunningServer, pathAndQuery: string) {
    const response = await adminFetch(`${server.dicomweb}${pathAndQuery}`, { headers: { Accept: 'application/dicom+json' } });
    const own = (text: string) => text.replaceAll(server.url, 'http://server');
    return { status: response.status, warning: own(response.headers.get('warning') ?? ''), body: own(await response.text()) };
  }

  it('answers every request alike, byte for byte', async () => {
    const charsetQueries = realTool
      .filter((f) => f.specificCharacterSet)
      .flatMap((f) => {
        const groups = f.patientNameUtf8.split('=');
        const alphabetic = groups[0]!;
        return [alphabetic, alphabetic.toUpperCase(), `${alphabetic.slice(0, 3).toLowerCase()}*`, ...(groups[1] ? [groups[1]] : [])];
      })
      .map((name) => `/studies?PatientName=${encodeURIComponent(name)}`);
    expect(charsetQueries.length).toBeGreaterThanOrEqual(20);
    const requests = [
      ...['ModalitiesInStudy', '00080061'].map((key) => `/studies?${key}=MR`),
      ...['PatientName', '00100010'].map((key) => `/studies?${key}=${encodeURIComponent('müller^jürgen')}`),
      `/studies?StudyInstanceUID=${mueller.studyUID}&StudyInstanceUID=${doe.studyUID}`,
      `/studies?PatientID=QIDO-1&PatientID=QIDO-2`,
      ...['fuzzymatching=yes', 'limit=-1', 'offset=1&offset=2', 'includefield=NotAKeyword', 'InstitutionName=General'].map((q) => `/studies?${q}`),
      `/studies/${mueller.studyUID}/series/${mr}/instances?SliceThickness=`,
      `/studies?PatientName=${encodeURIComponent('*MÜLL*')}&limit=101&offset=0&fuzzymatching=false&includefield=00081030,00080060,00080090,00100030`,
      `/studies?StudyInstanceUID=${unknown.studyUID}`,
      `/series?PatientID=QIDO-1`,
      `/studies/${mueller.studyUID}/series?SeriesInstanceUID=${ct}`,
      `/studies/${mueller.studyUID}/series?SeriesInstanceUID=${ct}&includefield=PatientName,00280004`,
      `/instances?PatientID=QIDO-1&Modality=CT`,
      `/studies/${mueller.studyUID}/instances?SeriesInstanceUID=${mr}`,
      `/studies?PatientID=QIDO-2`,
      `/studies/${doe.studyUID}/series`,
      `/studies/${doe.studyUID}/instances`,
      `/studies/${mueller.studyUID}/series/${mr}/instances?includefield=all`,
      `/studies?PatientID=QIDO-*&limit=2`,
      `/studies?PatientID=QIDO-*&limit=2&offset=2`,
      `/studies?limit=1`,
      `/studies?PatientID=QIDO-1&limit=0`,
      `/studies?PatientID=NOBODY&limit=0`,
      // The whole list, and pages of it, in its order.
      `/studies?limit=1000`,
      ...[0, 7, 14, 21].map((offset) => `/studies?limit=7&offset=${offset}`),
      `/series?limit=1000`,
      `/instances?limit=1000`,
      ...charsetQueries,
    ];
    for (const request of requests) expect(await http(onPg, request), request).toEqual(await http(onSqlite, request));
    // Each character set's patient is found by its name on Postgres too.
    for (const fixture of realTool.filter((f) => f.specificCharacterSet)) {
      const found = JSON.parse((await http(onPg, `/studies?PatientName=${encodeURIComponent(fixture.patientNameUtf8.split('=')[0]!.toUpperCase())}`)).body);
      expect(found.map((s: any) => s['0020000D'].Value[0]), fixture.path).toContain(fixture.studyUID);
    }
  });
});
