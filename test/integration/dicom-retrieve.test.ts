import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { AE, dataSetOf, registerAe, run, sha256, startDicomServer } from '../helpers/dimse.js';
import { adminFetch, freePort, stow, type RunningServer } from '../helpers/server.js';
import { indexRows, readObject, writeObject } from '../helpers/stored.js';
import { waitFor } from '../helpers/wait.js';

/**
 * C-MOVE and C-GET with dcmtk's movescu and getscu at the other end: instances go to a storescp the test runs
 * (registered as DEST) or back to getscu, at study, series and image level, each data set exactly as stored; an
 * unknown destination, a requester that may not retrieve and a C-CANCEL are answered as PS3.4 C.4 says.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const JPEG_LS = '1.2.840.10008.1.2.4.80';

let server: RunningServer;
let dicomPort: number;
let work: string;
let received: string;
let storescp: ChildProcess;
/** The study: two series, CT (3) and MR (2), as sent by STOW. */
const study = newUid();
const ct = syntheticSeries(3, { modality: 'CT', studyUID: study });
const mr = syntheticSeries(2, { modality: 'MR', studyUID: study });
/** A JPEG-LS instance made by dcmtk and an Explicit VR Little Endian one, in a study of their own. */
let mixed: { study: string; files: Buffer[] };
/** A long series, for C-CANCEL. */
const long = syntheticSeries(40, { modality: 'CT' });

beforeAll(async () => {
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-retrieve-'));
  received = path.join(work, 'received');
  await fs.mkdir(received);
  ({ server, dicomPort } = await startDicomServer());
  const destPort = await freePort();
  // +B writes what arrives byte for byte; +xa takes every syntax, compressed ones too.
  storescp = spawn('storescp', ['-aet', 'DEST', '+xa', '+B', '-od', received, String(destPort)], { stdio: 'ignore' });
  await registerAe(server, 'DEST', { host: '127.0.0.1', port: destPort });
  await registerAe(server, 'WORKSTATION', { host: '127.0.0.1', query: true, retrieve: true });
  await registerAe(server, 'VIEWONLY', { host: '127.0.0.1', query: true });
  await registerAe(server, 'NOWHERE', { host: '127.0.0.1' });
  const manifest = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Array<{ path: string; transferSyntaxUID: string; studyUID: string }>;
  const jls = manifest.find((f) => f.transferSyntaxUID === JPEG_LS && f.path === 'jpeg-ls-lossless.dcm')!;
  mixed = { study: jls.studyUID, files: [await fs.readFile(path.join(FIXTURES, jls.path)), syntheticInstance({ modality: 'CT', studyUID: jls.studyUID })] };
  for (const files of [[...ct, ...mr], mixed.files, long]) expect((await stow(server.dicomweb, files)).status).toBe(200);
}, 60_000);

afterAll(async () => {
  storescp?.kill();
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

beforeEach(async () => {
  for (const name of await fs.readdir(received)) await fs.rm(path.join(received, name), { recursive: true });
});

const sopUidOf = (file: Buffer) => dicomParser.parseDicom(file, { untilTag: 'x00080018' } as dicomParser.ParseDicomOptions).string('x00080018')!;

/** The data sets in a folder by SOP Instance UID, as their SHA-256. */
async function dataSetsIn(folder: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  for (const name of await fs.readdir(folder)) {
    const file = await fs.readFile(path.join(folder, name));
    found.set(sopUidOf(file), sha256(dataSetOf(file)));
  }
  return found;
}

/** What each sent file's data set is, by SOP Instance UID. */
const expected = (files: Buffer[]) => new Map(files.map((f) => [sopUidOf(f), sha256(dataSetOf(f))]));

const seriesUidOf = (file: Buffer) => dicomParser.parseDicom(file, { untilTag: 'x0020000e' } as dicomParser.ParseDicomOptions).string('x0020000e')!;

/** movescu (Study Root) as `as`, with its output, whatever its exit status. */
const movescu = (as: string, destination: string, keys: string[], ...options: string[]) =>
  run('movescu', ['-S', '-v', '-aet', as, '-aec', AE, '-aem', destination, ...options, ...keys.flatMap((k) => ['-k', k]), '127.0.0.1', String(dicomPort)]).then(
    ({ stdout, stderr }) => `${stdout}${stderr}`,
    (e: { stdout: string; stderr: string }) => `${e.stdout}${e.stderr}`,
  );

describe('C-MOVE and C-GET', () => {
  it('moves a study to a known destination, every data set as stored, and audits it', async () => {
    const out = await movescu('WORKSTATION', 'DEST', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${study}`]);
    expect(out).toMatch(/Final Move Response \(Success\)/i);
    expect(await dataSetsIn(received)).toEqual(expected([...ct, ...mr]));
    const audit = JSON.stringify(await (await adminFetch(`${server.url}/api/v1/audit?limit=200`)).json());
    expect(audit).toMatch(new RegExp(`C-MOVE[^}]*${study.replaceAll('.', '\\.')}|${study.replaceAll('.', '\\.')}[^}]*C-MOVE`));
  });

  it('moves a series, and a list of images, at their levels', async () => {
    await movescu('WORKSTATION', 'DEST', ['QueryRetrieveLevel=SERIES', `StudyInstanceUID=${study}`, `SeriesInstanceUID=${seriesUidOf(mr[0]!)}`]);
    expect(await dataSetsIn(received)).toEqual(expected(mr));
    for (const name of await fs.readdir(received)) await fs.rm(path.join(received, name));
    const images = [ct[0]!, ct[2]!];
    await movescu('WORKSTATION', 'DEST', ['QueryRetrieveLevel=IMAGE', `StudyInstanceUID=${study}`, `SeriesInstanceUID=${seriesUidOf(ct[0]!)}`, `SOPInstanceUID=${images.map(sopUidOf).join('\\')}`]);
    expect(await dataSetsIn(received)).toEqual(expected(images));
  });

  it('moves compressed instances in their stored syntax', async () => {
    const out = await movescu('WORKSTATION', 'DEST', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${mixed.study}`]);
    expect(out).toMatch(/Final Move Response \(Success\)/i);
    expect(await dataSetsIn(received)).toEqual(expected(mixed.files));
  });

  it('gets a study back on the requester’s association, every data set as stored', async () => {
    const into = path.join(work, 'got');
    await fs.mkdir(into);
    await run('getscu', ['-S', '-aet', 'WORKSTATION', '-aec', AE, '+B', '-od', into, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(dicomPort)]);
    expect(await dataSetsIn(into)).toEqual(expected([...ct, ...mr]));
  });

  it('counts an instance the receiver did not accept in its stored syntax as failed, and names it', async () => {
    const into = path.join(work, 'got-mixed');
    await fs.mkdir(into);
    // getscu offers the uncompressed syntaxes only: the JPEG-LS instance cannot go as stored. (getscu 3.6.7 leaves the
    // final response's identifier unread, and says so when it releases.)
    const got = await run('getscu', ['-S', '-v', '-aet', 'WORKSTATION', '-aec', AE, '+B', '-od', into, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${mixed.study}`, '127.0.0.1', String(dicomPort)]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${got.stdout}${got.stderr}`).toMatch(/SubOperationsCompleteOneOrMoreFailures[\s\S]*Completed Suboperations : 1[\s\S]*Failed Suboperations\s*: 1/);
    expect(await dataSetsIn(into)).toEqual(expected([mixed.files[1]!]));
    // movescu receiving for itself takes the uncompressed syntaxes only, and prints the failed list.
    const port = await freePort();
    await registerAe(server, 'MOVER', { host: '127.0.0.1', port });
    const moved = await movescu('WORKSTATION', 'MOVER', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${mixed.study}`], '-d', '+P', String(port), '-od', into);
    expect(moved).toMatch(/Final Move Response[\s\S]*Completed Suboperations\s*: 1[\s\S]*Failed Suboperations\s*: 1[\s\S]*DIMSE Status\s*: 0xb000/);
    expect(moved).toContain(`(0008,0058) UI [${sopUidOf(mixed.files[0]!)}]`);
  });

  it('refuses an unknown destination, and one without a port, with 0xA801', async () => {
    for (const destination of ['NOBODY', 'NOWHERE']) {
      const out = await movescu('WORKSTATION', destination, ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${study}`]);
      expect(out, destination).toMatch(/Final Move Response \(Refused: MoveDestinationUnknown\)/);
    }
    expect(await fs.readdir(received)).toEqual([]);
  });

  it('refuses C-MOVE and C-GET to a requester that may not retrieve', async () => {
    const out = await movescu('VIEWONLY', 'DEST', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${study}`]);
    expect(out).toMatch(/No valid Presentation Context ID/);
    const get = await run('getscu', ['-S', '-aet', 'VIEWONLY', '-aec', AE, '-od', work, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${study}`, '127.0.0.1', String(dicomPort)]).catch((e: { stdout: string; stderr: string }) => e);
    expect(`${get.stdout}${get.stderr}`).toMatch(/No (valid|Acceptable) Presentation Context/i);
    expect(await fs.readdir(received)).toEqual([]);
  });

  it('streams a large instance from the store rather than holding it in memory', { timeout: 120_000 }, async () => {
    // 2048 × 2048 × 2 bytes × 24 frames: 200 MB.
    const large = syntheticInstance({ modality: 'CT', rows: 2048, columns: 2048, frames: 24 });
    expect((await stow(server.dicomweb, [large])).status).toBe(200);
    const into = path.join(work, 'got-large');
    await fs.mkdir(into);
    // Linux: writing 5 to clear_refs resets the peak resident set size (VmHWM) to the current one.
    await fs.writeFile(`/proc/${server.process.pid}/clear_refs`, '5');
    const before = await peakMemory();
    await run('getscu', ['-S', '-aet', 'WORKSTATION', '-aec', AE, '+B', '-od', into, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${sopStudy(large)}`, '127.0.0.1', String(dicomPort)]);
    expect((await peakMemory()) - before, 'peak memory growth of the server while it sent 200 MB').toBeLessThan(64 * 1024 * 1024);
    expect(await dataSetsIn(into)).toEqual(expected([large]));
  });

  it('aborts the association when a stored instance turns out damaged while it is sent, so nothing of it is kept', async () => {
    // Larger than the server reads whole (2 MiB) and than one read of the store: its first bytes are sent before the
    // end shows the damage. A smaller one is checked whole before a byte goes, and fails alone.
    const damaged = syntheticInstance({ modality: 'CT', rows: 1024, columns: 1536 });
    expect((await stow(server.dicomweb, [damaged])).status).toBe(200);
    const [{ object_key: key }] = await indexRows<{ object_key: string }>(server, 'SELECT object_key FROM instances WHERE sop_uid = ?', [sopUidOf(damaged)]);
    const bytes = await readObject(server, key!);
    bytes[bytes.length - 1] ^= 0xff;
    await writeObject(server, key!, bytes);
    const into = path.join(work, 'got-damaged');
    await fs.mkdir(into);
    await run('getscu', ['-S', '-aet', 'WORKSTATION', '-aec', AE, '+B', '-od', into, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${sopStudy(damaged)}`, '127.0.0.1', String(dicomPort)]).catch(() => undefined);
    expect(await fs.readdir(into)).toEqual([]);
    // The server's log reaches the test through a pipe, after getscu may have exited.
    await waitFor('the log of the aborted sub-operation', () => server.logs.some((line) => line.includes('could not be sent whole') && line.includes(sopUidOf(damaged))) || undefined, 10_000);
  });

  it('fails a small damaged instance alone, checked whole before a byte of it goes, and sends the rest of the study', async () => {
    const studyUID = newUid();
    const [damaged, sound] = syntheticSeries(2, { studyUID, modality: 'CT', rows: 64, columns: 64 });
    expect((await stow(server.dicomweb, [damaged!, sound!])).status).toBe(200);
    const [{ object_key: key }] = await indexRows<{ object_key: string }>(server, 'SELECT object_key FROM instances WHERE sop_uid = ?', [sopUidOf(damaged!)]);
    const bytes = await readObject(server, key!);
    bytes[bytes.length - 1] ^= 0xff;
    await writeObject(server, key!, bytes);
    const into = path.join(work, 'got-one-damaged');
    await fs.mkdir(into);
    const out = await run('getscu', ['-v', '-aet', 'WORKSTATION', '-aec', AE, '+B', '-od', into, '-k', 'QueryRetrieveLevel=STUDY', '-k', `StudyInstanceUID=${studyUID}`, '127.0.0.1', String(dicomPort)]).catch((e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}`);
    const got = await fs.readdir(into);
    expect(got).toHaveLength(1);
    expect(sha256(dataSetOf(await fs.readFile(path.join(into, got[0]!))))).toBe(sha256(dataSetOf(sound!)));
    expect(String(out)).not.toMatch(/abort/i);
  });

  it('stops sending at a C-CANCEL and says Cancel', async () => {
    const out = await movescu('WORKSTATION', 'DEST', ['QueryRetrieveLevel=STUDY', `StudyInstanceUID=${sopStudy(long[0]!)}`], '--cancel', '1');
    expect(out).toMatch(/Final Move Response \(Cancel/i);
    expect((await fs.readdir(received)).length).toBeLessThan(long.length);
  });
});

function sopStudy(file: Buffer): string {
  return dicomParser.parseDicom(file, { untilTag: 'x0020000d' } as dicomParser.ParseDicomOptions).string('x0020000d')!;
}

/** The server's peak resident memory since it started or since it was last reset (VmHWM). */
async function peakMemory(): Promise<number> {
  const status = await fs.readFile(`/proc/${server.process.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}
