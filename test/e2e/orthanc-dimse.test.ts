import { readFileSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { AE, dataSetOf, registerAe, sha256, startDicomServer } from '../helpers/dimse.js';
import { startOrthancClient, type Orthanc } from '../helpers/orthanc.js';
import { adminFetch, freePort, readMultipartResponse, stow, type RunningServer } from '../helpers/server.js';

type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; patientNameUtf8: string };

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const fileOf = (f: Fixture) => readFileSync(path.join(FIXTURES, f.path));
/**
 * What Orthanc can send: 1.10 does not know the HTJ2K syntaxes (PS3.5 A.4.11, 2023), so it fails each of those
 * instances itself ("Unsupported transfer syntax" in its log) before any C-STORE request reaches PACS-lite.
 */
const HTJ2K = new Set(['1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203']);
const sendable = manifest.filter((f) => !HTJ2K.has(f.transferSyntaxUID));
const htj2k = manifest.filter((f) => HTJ2K.has(f.transferSyntaxUID));
const studyUIDs = [...new Set(sendable.map((f) => f.studyUID))].sort();
const AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*';
const ORTHANC_AE = 'ORTHANC';

/** One string element of a Part 10 file. */
const parse = (file: Buffer, tag: string) => dicomParser.parseDicom(file, { untilTag: tag } as dicomParser.ParseDicomOptions).string(tag)!;
const DEFLATED = '1.2.840.10008.1.2.1.99';

/**
 * What Orthanc stores of a data set it received, as SHA-256. A deflated one is compared inflated: Orthanc (DCMTK)
 * inflates it on receipt and deflates it again in its own way when it writes the file (stored blocks, 8,892 bytes
 * for the fixture's 1,074), though PACS-lite sends the stored deflate stream as is (a storescp +B gets it unchanged).
 */
const contentOf = (file: Buffer) => {
  const dataSet = dataSetOf(file);
  return sha256(parse(file, 'x00020010') === DEFLATED ? zlib.inflateRawSync(dataSet) : dataSet);
};

/** Values by SOP Instance UID, in order, so a difference names the instance. */
const bySopInstance = (entries: Array<[string, string]>) => Object.fromEntries(entries.sort(([a], [b]) => a.localeCompare(b)));

/**
 * Orthanc as a DICOM peer of PACS-lite, as a clinic running both would pair them: Orthanc C-STOREs studies to us,
 * searches us with C-FIND, and C-MOVEs a study from us to itself; each data set arrives as it was sent.
 */
describe('Orthanc 1.10, a DICOM peer of PACS-lite', () => {
  let pacs: RunningServer;
  let dicomPort: number;
  let orthanc: Orthanc;

  beforeAll(async () => {
    ({ server: pacs, dicomPort } = await startDicomServer());
    const orthancPort = await freePort();
    orthanc = await startOrthancClient({ dicom: { port: orthancPort, aeTitle: ORTHANC_AE, modalities: { pacs: [AE, '127.0.0.1', dicomPort] } } });
    await registerAe(pacs, ORTHANC_AE, { host: '127.0.0.1', port: orthancPort, store: true, query: true, retrieve: true });
    // Orthanc re-encodes each C-FIND answer into its DefaultEncoding, Latin1 unless told, and drops what that cannot
    // hold (Šimić^Ana became imi^Ana, though PACS-lite answers in ISO_IR 192): UTF-8 keeps every name.
    await fetch(`${orthanc.url}/tools/default-encoding`, { method: 'PUT', body: 'Utf8' }).then((r) => expect(r.status).toBe(200));
  });

  afterAll(async () => {
    await orthanc?.stop();
    await pacs?.stop();
  });

  // On a failure, what PACS-lite logged about the DICOM service during the test, and the end of Orthanc's log.
  beforeEach(({ onTestFailed }) => {
    const from = pacs.logs.length;
    onTestFailed(() => {
      const dicom = pacs.logs.slice(from).filter((l) => /DICOM|C-STORE|C-MOVE|C-FIND|association/i.test(l));
      const tail = readFileSync(orthanc.logFile, 'utf8').split('\n').slice(-40).join('\n');
      console.error(`PACS-lite logged:\n${dicom.join('\n')}\n--- end of ${orthanc.logFile} ---\n${tail}`);
    });
  });

  /** An instance as PACS-lite stores it, through WADO-RS in its stored syntax. */
  async function storedAtPacs(f: Pick<Fixture, 'studyUID' | 'seriesUID' | 'sopInstanceUID'>): Promise<Buffer> {
    const response = await adminFetch(`${pacs.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`, { headers: { Accept: AS_STORED } });
    expect(response.status, f.sopInstanceUID).toBe(200);
    return (await readMultipartResponse(response))[0]!.body;
  }

  /** Every instance Orthanc holds, by SOP Instance UID: its transfer syntax and its data set's content (contentOf). */
  async function heldByOrthanc(): Promise<Record<string, string>> {
    const held = await orthanc.json<Array<{ ID: string; MainDicomTags: { SOPInstanceUID: string } }>>('GET', '/instances?expand');
    const found: Array<[string, string]> = [];
    for (const instance of held) {
      const response = await fetch(`${orthanc.url}/instances/${instance.ID}/file`);
      expect(response.status).toBe(200);
      const file = Buffer.from(await response.arrayBuffer());
      found.push([instance.MainDicomTags.SOPInstanceUID, `${parse(file, 'x00020010')} ${contentOf(file)}`]);
    }
    return bySopInstance(found);
  }

  /** What heldByOrthanc should find after these files were moved. */
  const asSent = (files: Buffer[]) => bySopInstance(files.map((f) => [parse(f, 'x00080018'), `${parse(f, 'x00020010')} ${contentOf(f)}`]));

  async function emptyOrthanc(): Promise<void> {
    for (const id of await orthanc.json<string[]>('GET', '/studies')) await orthanc.json('DELETE', `/studies/${id}`);
    expect(await orthanc.json('GET', '/instances')).toEqual([]);
  }

  /** Asks Orthanc to C-MOVE studies from PACS-lite to itself, and waits for its answer. */
  const moveToOrthanc = (studies: string[]) =>
    orthanc.json('POST', '/modalities/pacs/move', { Level: 'Study', Resources: studies.map((StudyInstanceUID) => ({ StudyInstanceUID })), TargetAet: ORTHANC_AE, Synchronous: true });

  it('C-STOREs every study loaded into it, in each transfer syntax, and PACS-lite stores each data set byte for byte, found by QIDO', async () => {
    const orthancStudies = new Set<string>();
    for (const f of sendable) orthancStudies.add((await orthanc.json<{ ParentStudy: string }>('POST', '/instances', fileOf(f))).ParentStudy);
    const sent = await orthanc.json<{ InstancesCount: number; FailedInstancesCount: number; RemoteAet: string }>('POST', '/modalities/pacs/store', {
      Resources: [...orthancStudies],
      Synchronous: true,
    });
    expect(sent).toMatchObject({ RemoteAet: AE, InstancesCount: sendable.length, FailedInstancesCount: 0 });

    const found: string[] = [];
    for (const uid of studyUIDs) {
      const response = await adminFetch(`${pacs.dicomweb}/studies/${uid}/instances`, { headers: { Accept: 'application/dicom+json' } });
      expect(response.status, uid).toBe(200);
      for (const instance of (await response.json()) as Array<Record<string, { Value: string[] }>>) found.push(instance['00080018']!.Value[0]!);
    }
    expect(found.sort()).toEqual(sendable.map((f) => f.sopInstanceUID).sort());

    // Each arrived in its file's syntax, which Orthanc proposes and PACS-lite takes: nothing was transcoded on the way.
    const syntaxes: Array<[string, string]> = [];
    const dataSets: Array<[string, string]> = [];
    for (const f of sendable) {
      const file = await storedAtPacs(f);
      syntaxes.push([f.sopInstanceUID, parse(file, 'x00020010')]);
      dataSets.push([f.sopInstanceUID, sha256(dataSetOf(file))]);
    }
    expect(bySopInstance(syntaxes)).toEqual(bySopInstance(sendable.map((f) => [f.sopInstanceUID, f.transferSyntaxUID])));
    expect(bySopInstance(dataSets)).toEqual(bySopInstance(sendable.map((f) => [f.sopInstanceUID, sha256(dataSetOf(fileOf(f)))])));
  });

  it('answers Orthanc’s C-FIND with every study, patient names from every character set in UTF-8', async () => {
    const query = await orthanc.json<{ ID: string }>('POST', '/modalities/pacs/query', { Level: 'Study', Query: { PatientName: '*' } });
    const answers = await orthanc.json<Array<Record<string, { Value: string }>>>('GET', `/queries/${query.ID}/answers?expand`);
    const names = Object.fromEntries(answers.map((a) => [a['0020,000d']?.Value, a['0010,0010']?.Value]));
    expect(Object.keys(names).sort()).toEqual(studyUIDs);
    expect(names).toEqual(Object.fromEntries(sendable.map((f) => [f.studyUID, f.patientNameUtf8])));
  });

  it('C-MOVEs a study Orthanc has not to Orthanc, every data set as stored', async () => {
    const study = newUid();
    const files = [...syntheticSeries(3, { modality: 'CT', studyUID: study }), ...syntheticSeries(2, { modality: 'MR', studyUID: study })];
    expect((await stow(pacs.dicomweb, files)).status).toBe(200);
    await emptyOrthanc();
    await moveToOrthanc([study]);
    expect(await heldByOrthanc()).toEqual(asSent(files));
  });

  it('C-MOVEs the studies Orthanc sent back to it, emptied, each data set in its stored syntax', async () => {
    await emptyOrthanc();
    await moveToOrthanc(studyUIDs);
    expect(await heldByOrthanc()).toEqual(asSent(sendable.map(fileOf)));
  });

  it('does not transcode what Orthanc cannot take: HTJ2K instances fail the C-MOVE, named in the log', async () => {
    expect((await stow(pacs.dicomweb, htj2k.map(fileOf))).status).toBe(200);
    await emptyOrthanc();
    const from = pacs.logs.length;
    // Orthanc accepts no HTJ2K presentation context, so each sub-operation fails and Orthanc answers with an error;
    // one study a call, as Orthanc gives up on a list at its first failure.
    for (const study of new Set(htj2k.map((f) => f.studyUID))) await expect(moveToOrthanc([study]), study).rejects.toThrow(/answered POST \/modalities\/pacs\/move with 500/);
    const refused = () =>
      pacs.logs
        .slice(from)
        .filter((l) => l.includes('the receiver accepted no context for the stored SOP class and transfer syntax'))
        .map((l) => (JSON.parse(l) as { sopInstanceUid: string }).sopInstanceUid)
        .sort();
    await expect.poll(refused).toEqual(htj2k.map((f) => f.sopInstanceUID).sort());
    expect(await orthanc.json('GET', '/instances')).toEqual([]);
  });
});
