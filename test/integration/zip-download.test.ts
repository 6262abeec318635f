import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

/**
 * A study or series downloaded as a ZIP (issue 15): streamed as it is read, every file as stored under a name a person
 * can read, read back by Python's zipfile (another implementation than ours), memory flat for a large series.
 */

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const run = promisify(execFile);

let server: RunningServer;
let work: string;
const study = newUid();
const ct = newUid();
const mr = newUid();
const common = { studyUID: study, patientName: 'Müller^Jörg', patientID: 'ZIP/01', studyDate: '20260105', studyDescription: 'CT: chest / abdomen' };
const files = [
  ...[2, 1, 3].map((n) => syntheticInstance({ ...common, seriesUID: ct, modality: 'CT', seriesNumber: 1, seriesDescription: 'Axial 1.0', instanceNumber: n })),
  syntheticInstance({ ...common, seriesUID: mr, modality: 'MR', seriesNumber: 2, seriesDescription: 'T1', instanceNumber: 1 }),
];

beforeAll(async () => {
  server = await startServer();
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-zip-'));
  expect((await stow(server.dicomweb, files)).status).toBe(200);
});

afterAll(async () => {
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** The archive's entries by name, each file's SHA-256, as Python's zipfile reads them (its CRC-32 checked too). */
async function entriesOf(zip: Buffer): Promise<Record<string, string>> {
  const file = await saved(zip);
  const script = 'import zipfile,hashlib,json,sys\nz=zipfile.ZipFile(sys.argv[1])\nassert z.testzip() is None\nprint(json.dumps({i.filename: hashlib.sha256(z.read(i)).hexdigest() for i in z.infolist()}))';
  const { stdout } = await run('python3', ['-c', script, file], { maxBuffer: 64 * 1024 * 1024 });
  return JSON.parse(stdout);
}

async function saved(zip: Buffer): Promise<string> {
  const file = path.join(work, `${newUid()}.zip`);
  await fs.writeFile(file, zip);
  return file;
}

async function download(url: string, headers: Record<string, string> = {}): Promise<{ response: Response; zip: Buffer }> {
  const response = await adminFetch(url, { headers });
  expect(response.status, url).toBe(200);
  return { response, zip: Buffer.from(await response.arrayBuffer()) };
}

describe('ZIP download', () => {
  it('sends a study as a ZIP of its files as stored, under readable names, to Accept: application/zip', async () => {
    const { response, zip } = await download(`${server.dicomweb}/studies/${study}`, { Accept: 'application/zip' });
    expect(response.headers.get('content-type')).toBe('application/zip');
    expect(response.headers.get('content-disposition')).toMatch(/^attachment; filename="[^"]+\.zip"; filename\*=UTF-8''M%C3%BCller_J%C3%B6rg_ZIP_01_20260105_CT_chest_abdomen\.zip$/);
    const folder = 'Müller_Jörg_ZIP_01/20260105_CT_chest_abdomen';
    expect(await entriesOf(zip)).toEqual({
      [`${folder}/1_CT_Axial_1.0/0001.dcm`]: sha256(files[1]!),
      [`${folder}/1_CT_Axial_1.0/0002.dcm`]: sha256(files[0]!),
      [`${folder}/1_CT_Axial_1.0/0003.dcm`]: sha256(files[2]!),
      [`${folder}/2_MR_T1/0001.dcm`]: sha256(files[3]!),
    });
  });

  it('sends one series, and the study from the API for a button or a script', async () => {
    const series = await entriesOf((await download(`${server.dicomweb}/studies/${study}/series/${mr}`, { Accept: 'application/zip' })).zip);
    expect(Object.values(series)).toEqual([sha256(files[3]!)]);
    const whole = await entriesOf((await download(`${server.url}/api/v1/studies/${study}/download`)).zip);
    expect(Object.values(whole).sort()).toEqual(files.map(sha256).sort());
    expect((await adminFetch(`${server.url}/api/v1/studies/${newUid()}/download`)).status).toBe(404);
  });

  it('sends a CD\'s file-set with a DICOMDIR that dcmtk and pydicom read, each record leading to its file', async () => {
    const zip = await entriesOf((await download(`${server.url}/api/v1/studies/${study}/download?layout=media`)).zip);
    expect(Object.keys(zip)).toEqual(['DICOMDIR', 'DICOM/PAT1/STUDY1/SER00001/IM000001', 'DICOM/PAT1/STUDY1/SER00001/IM000002', 'DICOM/PAT1/STUDY1/SER00001/IM000003', 'DICOM/PAT1/STUDY1/SER00002/IM000001']);
    expect(zip['DICOM/PAT1/STUDY1/SER00001/IM000001']).toBe(sha256(files[1]!));
    const cd = path.join(work, newUid());
    await run('unzip', ['-q', await saved((await download(`${server.url}/api/v1/studies/${study}/download?layout=media`)).zip), '-d', cd]);
    const { stdout: dump } = await run('dcmdump', ['+U8', path.join(cd, 'DICOMDIR')]);
    expect(dump).toMatch(/\(0002,0002\) UI =MediaStorageDirectoryStorage/);
    expect(dump.match(/\(0004,1430\) CS \[(\w+)\s*\]/g)!.map((l) => l.replace(/.*\[|\s*\]/g, ''))).toEqual(['PATIENT', 'STUDY', 'SERIES', 'IMAGE', 'IMAGE', 'IMAGE', 'SERIES', 'IMAGE']);
    expect(dump).toContain('(0010,0010) PN [Müller^Jörg]');
    // pydicom's FileSet follows the records' offsets from the DICOMDIR alone, and opens each file they lead to.
    const script = [
      'import sys, json',
      'from pydicom import dcmread',
      'from pydicom.fileset import FileSet',
      'fs = FileSet(dcmread(sys.argv[1]))',
      'print(json.dumps([[i.PatientID, i.SeriesInstanceUID, i.InstanceNumber, i.path.replace(sys.argv[2], ""), i.load().SOPInstanceUID == i.SOPInstanceUID] for i in fs]))',
    ].join('\n');
    const { stdout } = await run('/usr/bin/python3', ['-c', script, path.join(cd, 'DICOMDIR'), `${cd}/`]);
    expect(JSON.parse(stdout)).toEqual([
      ['ZIP/01', ct, 1, 'DICOM/PAT1/STUDY1/SER00001/IM000001', true],
      ['ZIP/01', ct, 2, 'DICOM/PAT1/STUDY1/SER00001/IM000002', true],
      ['ZIP/01', ct, 3, 'DICOM/PAT1/STUDY1/SER00001/IM000003', true],
      ['ZIP/01', mr, 1, 'DICOM/PAT1/STUDY1/SER00002/IM000001', true],
    ]);
    expect((await adminFetch(`${server.url}/api/v1/studies/${study}/download?layout=cd`)).status).toBe(400);
  });

  it('streams a large series with flat memory', { timeout: 120_000 }, async () => {
    // 2048 × 2048 × 2 bytes × 24 frames: 200 MB.
    const studyUid = newUid();
    const large = syntheticInstance({ studyUID: studyUid, rows: 2048, columns: 2048, frames: 24 });
    expect((await stow(server.dicomweb, [large])).status).toBe(200);
    await fs.writeFile(`/proc/${server.process.pid}/clear_refs`, '5');
    const before = await peakMemory();
    const { zip } = await download(`${server.dicomweb}/studies/${studyUid}`, { Accept: 'application/zip' });
    expect((await peakMemory()) - before, 'peak memory growth of the server while it sent 200 MB').toBeLessThan(64 * 1024 * 1024);
    expect(Object.values(await entriesOf(zip))).toEqual([sha256(large)]);
  });

  it('stops reading, and closes every file it read ahead, when the client goes away mid-download', { timeout: 60_000 }, async () => {
    const studyUid = newUid();
    const seriesUid = newUid();
    // 4 MB each: files read in chunks, not whole, so that a read ahead waits with its file open.
    const many = Array.from({ length: 16 }, (_, i) => syntheticInstance({ studyUID: studyUid, seriesUID: seriesUid, instanceNumber: i + 1, rows: 1024, columns: 1024, frames: 2 }));
    expect((await stow(server.dicomweb, many)).status).toBe(200);
    const before = await openFiles();
    const aborting = new AbortController();
    const response = await adminFetch(`${server.url}/api/v1/studies/${studyUid}/download`, { signal: aborting.signal });
    const reader = response.body!.getReader();
    expect((await reader.read()).done).toBe(false);
    aborting.abort();
    await waitFor('the server to close the files of the download the client left', async () => (await openFiles()) <= before || undefined);
    // And it serves on: the same download, whole.
    expect(Object.values(await entriesOf((await download(`${server.url}/api/v1/studies/${studyUid}/download`)).zip))).toEqual(many.map(sha256));
  });

  it('holds bounded memory for many clients that stop reading, and serves on', { timeout: 120_000 }, async () => {
    const studyUid = newUid();
    const seriesUid = newUid();
    // 40 files just under the size read whole: each a response could read ahead.
    const series = Array.from({ length: 40 }, (_, i) => syntheticInstance({ studyUID: studyUid, seriesUID: seriesUid, instanceNumber: i + 1, rows: 1000, columns: 1000 }));
    for (let i = 0; i < series.length; i += 10) expect((await stow(server.dicomweb, series.slice(i, i + 10))).status).toBe(200);
    await fs.writeFile(`/proc/${server.process.pid}/clear_refs`, '5');
    const before = await peakMemory();
    // Forty downloads whose clients read their first bytes and then nothing: each held 36 MB (1.4 GB) before the
    // read-ahead of all responses was bounded together.
    const stalled = await Promise.all(
      Array.from({ length: 40 }, async () => {
        const aborting = new AbortController();
        const response = await adminFetch(`${server.url}/api/v1/studies/${studyUid}/download`, { signal: aborting.signal });
        expect((await response.body!.getReader().read()).done).toBe(false);
        return aborting;
      }),
    );
    await new Promise((r) => setTimeout(r, 2000));
    const growth = (await peakMemory()) - before;
    const healthz = performance.now();
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect(performance.now() - healthz, '/healthz while 40 downloads stall').toBeLessThan(1000);
    for (const aborting of stalled) aborting.abort();
    expect(growth, 'peak memory growth of the server while 40 clients stall').toBeLessThan(600 * 1024 * 1024);
    expect(Object.values(await entriesOf((await download(`${server.url}/api/v1/studies/${studyUid}/download`)).zip))).toEqual(series.map(sha256));
  });
});

/** How many files and sockets the server holds open. */
async function openFiles(): Promise<number> {
  return (await fs.readdir(`/proc/${server.process.pid}/fd`)).length;
}

/** The server's peak resident memory since it started or was last reset (VmHWM). */
async function peakMemory(): Promise<number> {
  const status = await fs.readFile(`/proc/${server.process.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}
