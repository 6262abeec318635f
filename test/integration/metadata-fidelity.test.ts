import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { greyImage, SopClass } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/** What is answered of a file is what the file holds: nothing added, nothing dropped, each value with its right VR. */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
let server: RunningServer;
let work: string;

beforeAll(async () => {
  server = await startServer();
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-fidelity-'));
});

afterAll(async () => {
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/** A fixture changed by dcmodify (the real tool), with a SOP Instance UID of its own, and its UIDs. */
async function modified(fixture: string, ...args: string[]) {
  const file = path.join(work, `${newUid()}.dcm`);
  await fs.copyFile(path.join(FIXTURES, fixture), file);
  const sop = newUid();
  // dcmodify writes the meta information's MediaStorageSOPInstanceUID to match.
  execFileSync('dcmodify', ['-q', '-nb', '-m', `(0008,0018)=${sop}`, ...args, file]);
  const bytes = await fs.readFile(file);
  const ds = dicomParser.parseDicom(bytes, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
  return { bytes, study: ds.string('x0020000d')!, series: ds.string('x0020000e')!, sop };
}

async function metadataOf(f: { study: string; series: string; sop: string }) {
  const [json] = await (await adminFetch(`${server.dicomweb}/studies/${f.study}/series/${f.series}/instances/${f.sop}/metadata`)).json();
  return json as Record<string, { vr: string; Value?: unknown[] }>;
}

describe('metadata holds what the file holds', () => {
  it('adds no NumberOfFrames to a single-frame instance that has none', async () => {
    const f = await modified('explicit-le.dcm');
    expect(dicomParser.parseDicom(f.bytes).elements.x00280008).toBeUndefined();
    expect((await stow(server.dicomweb, [f.bytes])).status).toBe(200);
    expect((await metadataOf(f))['00280008']).toBeUndefined();
  });

  it('reads a private creator of an Implicit VR file as LO', async () => {
    const f = await modified('implicit-le.dcm', '-i', '(0009,0010)=ACME 1.1');
    expect((await stow(server.dicomweb, [f.bytes])).status).toBe(200);
    expect((await metadataOf(f))['00090010']).toEqual({ vr: 'LO', Value: ['ACME 1.1'] });
  });

  it('keeps the pad byte of odd-length native pixel data in its bulk data', async () => {
    const [study, series, sop] = [newUid(), newUid(), newUid()];
    const pixels = Buffer.from([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const file = greyImage({ sopClassUID: SopClass.MR, studyUID: study, seriesUID: series, sopInstanceUID: sop, modality: 'MR', patientName: 'Pad^Odd', side: 3, bitsAllocated: 8, transferSyntaxUID: '1.2.840.10008.1.2.1', pixels });
    const element = dicomParser.parseDicom(file).elements.x7fe00010!;
    expect(element.length).toBe(10);
    expect((await stow(server.dicomweb, [file])).status).toBe(200);
    const response = await adminFetch(`${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}/bulkdata/7FE00010`, { headers: { Accept: 'application/octet-stream' } });
    expect(response.status).toBe(200);
    expect(Buffer.from(await response.arrayBuffer()).equals(file.subarray(element.dataOffset, element.dataOffset + 10))).toBe(true);
  });
});

describe('QIDO includefield=all at study level', () => {
  it('answers every study-level attribute the instances carry, beyond the default set', async () => {
    // A study of its own: a study keeps the attributes of the first instance stored in it.
    const f = await modified('explicit-le.dcm', '-m', `(0020,000D)=${newUid()}`, '-i', '(0010,2000)=Penicillin', '-i', '(0008,1060)=Reader^Rita');
    expect((await stow(server.dicomweb, [f.bytes])).status).toBe(200);
    const [all] = await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${f.study}&includefield=all`)).json();
    expect(all['00102000']).toEqual({ vr: 'LO', Value: ['Penicillin'] });
    expect(all['00081060']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Reader^Rita' }] });
    const [plain] = await (await adminFetch(`${server.dicomweb}/studies?StudyInstanceUID=${f.study}`)).json();
    expect(plain['00102000']).toBeUndefined();
  });
});
