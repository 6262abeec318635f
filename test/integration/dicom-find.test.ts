import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid, writePart10, type WriteElement } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, freePort, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * C-FIND as dcmtk's findscu asks it, Patient Root and Study Root, at every level: answered from the index by QIDO's
 * matching rules, names found in the character set they are asked in and answered in UTF-8, C-CANCEL heeded, callers
 * without the right to query refused, hostile identifiers refused at once.
 */

const run = promisify(execFile);
const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const AE = 'PACSLITE';
const PATIENT_ROOT = '1.2.840.10008.5.1.4.1.2.1.1';
const CHARSETS = ['latin1', 'utf8', 'jis', 'greek', 'cyrillic', 'gb18030', 'korean'] as const;

let server: RunningServer;
let dicomPort: number;
let work: string;
const march = { study: newUid(), ct: newUid(), mr: newUid() };
const september = { study: newUid(), series: newUid() };
const crowd = { study: newUid(), series: newUid() };

const putAe = (aeTitle: string, rights: { store: boolean; query: boolean }) =>
  adminFetch(`${server.url}/api/v1/application-entities/${aeTitle}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ host: '127.0.0.1', ...rights, retrieve: false }),
  });

beforeAll(async () => {
  dicomPort = await freePort();
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-find-'));
  server = await startServer({ env: { PACS_DICOM_PORT: String(dicomPort), PACS_DICOM_AE_TITLE: AE, PACS_DICOM_TIMEOUT: '10' } });
  expect((await putAe('FINDER', { store: false, query: true })).status).toBe(201);
  expect((await putAe('NOQUERY', { store: true, query: false })).status).toBe(201);
  const patient = { patientID: 'FINDP1', patientName: 'Findlay^Fiona' };
  const files = [
    ...(await Promise.all(CHARSETS.map((c) => fs.readFile(path.join(FIXTURES, `charset-${c}.dcm`))))),
    ...syntheticSeries(3, { ...patient, studyUID: march.study, seriesUID: march.ct, modality: 'CT', studyDate: '20230310' }),
    ...syntheticSeries(2, { ...patient, studyUID: march.study, seriesUID: march.mr, modality: 'MR', studyDate: '20230310' }),
    syntheticInstance({ ...patient, studyUID: september.study, seriesUID: september.series, modality: 'CT', studyDate: '20230920' }),
    ...syntheticSeries(150, { patientID: 'CROWD', patientName: 'Crowd^Many', studyUID: crowd.study, seriesUID: crowd.series, rows: 8, columns: 8 }),
  ];
  expect((await stow(server.dicomweb, files)).status).toBe(200);
}, 120_000);

afterAll(async () => {
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

type Answer = Record<string, string>;
type Found = { answers: Answer[]; output: string };

/** findscu with `keys` (-k) and query files, its responses written by -X and read back as UTF-8 text by tag. */
async function findscu(model: '-S' | '-P', keys: string[], opts: { aet?: string; files?: string[]; extra?: string[] } = {}): Promise<Found> {
  const dir = await fs.mkdtemp(path.join(work, 'rsp-'));
  const args = ['-d', '-aet', opts.aet ?? 'FINDER', '-aec', AE, model, '-X', '--output-directory', dir, ...(opts.extra ?? []), ...keys.flatMap((k) => ['-k', k])];
  const result = await run('findscu', [...args, '127.0.0.1', String(dicomPort), ...(opts.files ?? [])], { maxBuffer: 64 * 1024 * 1024 }).catch((e: { stdout: string; stderr: string }) => e);
  const names = (await fs.readdir(dir)).filter((f) => f.startsWith('rsp')).sort();
  const answers = await Promise.all(names.map(async (name) => textOf(await fs.readFile(path.join(dir, name)))));
  return { answers, output: `${result.stdout}${result.stderr}` };
}

function textOf(file: Buffer): Answer {
  const ds = dicomParser.parseDicom(file);
  const out: Answer = {};
  for (const [key, el] of Object.entries(ds.elements)) {
    if (key.startsWith('x0002')) continue;
    out[key.slice(1).toUpperCase()] = Buffer.from(ds.byteArray.buffer, ds.byteArray.byteOffset + el.dataOffset, el.length).toString('utf8').replace(/[\0 ]+$/, '');
  }
  return out;
}

/** A query file in a character set of its own: text values are the bytes given. */
async function queryFile(name: string, elements: WriteElement[]): Promise<string> {
  const file = path.join(work, `${name}.dcm`);
  await fs.writeFile(file, writePart10(elements, { transferSyntaxUID: '1.2.840.10008.1.2.1', sopClassUID: PATIENT_ROOT, sopInstanceUID: newUid() }));
  return file;
}

/** A fixture's PatientName and SpecificCharacterSet as its bytes say them, before any decoding. */
async function rawName(fixture: string): Promise<{ charset: Buffer; name: Buffer }> {
  const ds = dicomParser.parseDicom(await fs.readFile(path.join(FIXTURES, `charset-${fixture}.dcm`)), { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
  const bytes = (tag: string) => {
    const el = ds.elements[tag]!;
    const value = Buffer.from(ds.byteArray.buffer, ds.byteArray.byteOffset + el.dataOffset, el.length);
    return value.subarray(0, value.length - (value.at(-1) === 0x20 ? 1 : 0));
  };
  return { charset: bytes('x00080005'), name: bytes('x00100010') };
}

/** The final response's status, as findscu -d shows it. */
const finalStatus = (output: string) => /Received Final Find Response[\s\S]*?DIMSE Status\s*:\s*0x([0-9a-fA-F]{4})/.exec(output)?.[1]?.toUpperCase();

describe('C-FIND', () => {
  it('finds a patient at PATIENT level (Patient Root), with counts over its studies', async () => {
    const { answers, output } = await findscu('-P', ['QueryRetrieveLevel=PATIENT', 'PatientID=FINDP1', 'PatientName', 'NumberOfPatientRelatedStudies', 'NumberOfPatientRelatedInstances']);
    expect(finalStatus(output)).toBe('0000');
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ '00080052': 'PATIENT', '00100020': 'FINDP1', '00100010': 'Findlay^Fiona', '00201200': '2', '00201204': '6', '00080054': AE, '00080005': 'ISO_IR 192' });
  });

  it('finds studies by a date range, answering only the keys asked and where to retrieve them', async () => {
    const { answers, output } = await findscu('-S', ['QueryRetrieveLevel=STUDY', 'PatientID=FINDP1', 'StudyDate=20230101-20230630', 'StudyInstanceUID', 'ModalitiesInStudy', 'NumberOfStudyRelatedInstances', 'AccessionNumber', 'PatientComments']);
    expect(finalStatus(output)).toBe('0000');
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ '0020000D': march.study, '00080061': 'CT\\MR', '00201208': '5', '00080054': AE, '00080050': 'ACC0001', '00104000': '' });
    expect(answers[0]!['00080060']).toBeUndefined();
    const open = await findscu('-S', ['QueryRetrieveLevel=STUDY', 'PatientID=FINDP1', 'StudyDate=20230601-', 'StudyInstanceUID']);
    expect(open.answers.map((a) => a['0020000D'])).toEqual([september.study]);
  });

  it('finds series of a list of studies (a UID list), and images in Patient Root', async () => {
    const { answers } = await findscu('-S', ['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${march.study}\\${september.study}`, 'SeriesInstanceUID', 'Modality', 'NumberOfSeriesRelatedInstances']);
    expect(answers.map((a) => `${a['0020000E']} ${a['00080060']} ${a['00201209']}`).sort()).toEqual(
      [`${march.ct} CT 3`, `${march.mr} MR 2`, `${september.series} CT 1`].sort(),
    );
    const images = await findscu('-P', ['QueryRetrieveLevel=IMAGE', 'PatientID=FINDP1', `StudyInstanceUID=${march.study}`, `SeriesInstanceUID=${march.ct}`, 'SOPInstanceUID', 'InstanceNumber']);
    expect(finalStatus(images.output)).toBe('0000');
    expect(images.answers.map((a) => a['00200013']).sort()).toEqual(['1', '2', '3']);
    expect(images.answers.every((a) => a['00080018'] && a['00080052'] === 'IMAGE')).toBe(true);
  });

  it('matches a wildcard name in UTF-8, case-insensitively, and answers it in UTF-8', async () => {
    const { answers } = await findscu('-S', ['SpecificCharacterSet=ISO_IR 192', 'QueryRetrieveLevel=STUDY', 'PatientName=mül*', 'PatientID', 'StudyInstanceUID']);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ '00100010': 'Müller^Jürgen', '00100020': 'PID40', '00080005': 'ISO_IR 192' });
  });

  it('finds each non-ASCII name asked in its own character set (ISO 8859, ISO 2022 JIS and KS X 1001, GB18030)', async () => {
    // The first component group of the name the fixture holds, in the fixture's own bytes, as a prefix: `Müller^*`.
    const groups: Record<(typeof CHARSETS)[number], number> = { latin1: 0, utf8: 0, jis: 1, greek: 0, cyrillic: 0, gb18030: 1, korean: 2 };
    const expected: Record<string, string> = { latin1: 'Müller^Jürgen', utf8: 'Šimić^Ana', jis: 'Yamada^Tarou=山田^太郎=やまだ^たろう', greek: 'Διονυσιος', cyrillic: 'Люксембург', gb18030: 'Wang^XiaoDong=王^小东', korean: 'Hong^Gildong=洪^吉洞=홍^길동' };
    for (const fixture of CHARSETS) {
      const { charset, name } = await rawName(fixture);
      const group = split(name, 0x3d)[groups[fixture]]!;
      const family = split(group, 0x5e)[0]!;
      const query = Buffer.concat([...Array.from({ length: groups[fixture] }, () => Buffer.from('=')), family, Buffer.from('*')]);
      const file = await queryFile(`name-${fixture}`, [
        { tag: '00080005', vr: 'CS', value: charset },
        { tag: '00080052', vr: 'CS', value: 'STUDY' },
        { tag: '00100010', vr: 'PN', value: query },
        { tag: '00100020', vr: 'LO', value: '' },
      ]);
      const { answers, output } = await findscu('-P', [], { files: [file] });
      expect(answers.map((a) => a['00100010']), `${fixture}: ${output}`).toEqual([expected[fixture]]);
      expect(answers[0]!['00080005']).toBe('ISO_IR 192');
    }
  });

  it('stops at a C-CANCEL, saying so in its final status', async () => {
    const { answers, output } = await findscu('-S', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${crowd.study}`, 'SOPInstanceUID'], { extra: ['--cancel', '1'] });
    expect(finalStatus(output)).toBe('FE00');
    expect(answers.length).toBeGreaterThanOrEqual(1);
    expect(answers.length).toBeLessThan(150);
    const all = await findscu('-S', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${crowd.study}`, 'SOPInstanceUID']);
    expect(all.answers).toHaveLength(150);
  });

  it('refuses to search for a caller without the right to query, and an unknown one', async () => {
    const noQuery = await findscu('-S', ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID'], { aet: 'NOQUERY' });
    expect(noQuery.output).toMatch(/No Acceptable Presentation Contexts/i);
    expect(noQuery.answers).toHaveLength(0);
    const stranger = await findscu('-S', ['QueryRetrieveLevel=STUDY', 'StudyInstanceUID'], { aet: 'STRANGER' });
    expect(stranger.output).toMatch(/Association Rejected/i);
    // Each C-FIND answered is in the audit trail under its AE title, with what it asked.
    const audit = JSON.stringify(await (await adminFetch(`${server.url}/api/v1/audit?limit=500`)).json());
    expect(audit).toMatch(/C-FIND/);
    expect(audit).toMatch(/STUDY StudyDate=20230101-20230630 PatientID=FINDP1/);
  });

  it('refuses a level the model has not, and a key of a level below the one asked', async () => {
    const patientInStudyRoot = await findscu('-S', ['QueryRetrieveLevel=PATIENT', 'PatientID']);
    expect(finalStatus(patientInStudyRoot.output)).toBe('A900');
    const tooLow = await findscu('-S', ['QueryRetrieveLevel=STUDY', `SOPInstanceUID=${newUid()}`]);
    expect(finalStatus(tooLow.output)).toBe('A900');
  });

  it('answers or refuses a hostile identifier within a few seconds', async () => {
    const started = Date.now();
    const wild = await findscu('-S', ['QueryRetrieveLevel=STUDY', `PatientName=${'*?'.repeat(30_000)}`, 'StudyInstanceUID']);
    expect(finalStatus(wild.output)).toBe('C000');
    expect(wild.output).toMatch(/60000 characters/);
    const charset = await findscu('-S', ['SpecificCharacterSet=ISO_IR 999', 'QueryRetrieveLevel=STUDY', 'PatientName=M*', 'StudyInstanceUID']);
    expect(finalStatus(charset.output)).toBe('C000');
    // Wildcards everywhere a key may be matched, each within its length: answered.
    const everywhere = await findscu('-S', ['QueryRetrieveLevel=STUDY', `PatientName=${'*?'.repeat(90)}*`, 'PatientID=*', 'AccessionNumber=*?*', 'StudyDescription=**', 'StudyInstanceUID']);
    expect(finalStatus(everywhere.output)).toBe('0000');
    expect(Date.now() - started).toBeLessThan(10_000);
    // The server still answers.
    const after = await findscu('-S', ['QueryRetrieveLevel=STUDY', 'PatientID=FINDP1', 'StudyInstanceUID']);
    expect(after.answers).toHaveLength(2);
  });
});

function split(bytes: Buffer, delimiter: number): Buffer[] {
  const parts: Buffer[] = [];
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === delimiter) {
      parts.push(bytes.subarray(start, i));
      start = i + 1;
    }
  }
  return parts;
}
