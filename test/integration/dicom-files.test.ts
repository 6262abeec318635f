import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, type RunningServer } from '../helpers/server.js';

/**
 * DICOM files from a form, matched to the EMR's order (issue 15): the values set, the old ones in the Original
 * Attributes Sequence, checked with dcmtk; files made and changed with dcmtk's dcmconv, dcmodify and dcmcjpeg.
 */

const run = promisify(execFile);
let server: RunningServer;
let work: string;

beforeAll(async () => {
  // Sending a corrected file again, corrected once more, replaces it: the second item of its sequence is tested so.
  server = await startServer({ env: { PACS_OVERWRITE_DIFFERENT: 'true' } });
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-dicom-files-'));
});
afterAll(async () => {
  await server?.stop();
  await fs.rm(work, { recursive: true, force: true });
});

async function send(files: Array<{ name: string; bytes: Buffer }>, fields: Record<string, string>) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const f of files) form.append('file', new Blob([new Uint8Array(f.bytes)], { type: 'application/dicom' }), f.name);
  const response = await adminFetch(`${server.url}/api/v1/uploads`, { method: 'POST', body: form });
  return { status: response.status, body: (await response.json()) as any };
}

/** A file as dcmtk's tools leave it: `tool args… in out`. */
async function withTool(bytes: Buffer, tool: string, args: string[]): Promise<Buffer> {
  const input = path.join(work, `${newUid()}.dcm`);
  const output = `${input}.out`;
  await fs.writeFile(input, bytes);
  await run(tool, [...args, input, output]);
  return fs.readFile(output);
}

/** A file as dcmodify leaves it, which changes files in place. */
async function modified(bytes: Buffer, args: string[]): Promise<Buffer> {
  const file = path.join(work, `${newUid()}.dcm`);
  await fs.writeFile(file, bytes);
  await run('dcmodify', [...args, file]);
  return fs.readFile(file);
}

async function stored(bytes: Buffer): Promise<{ file: Buffer; dump: string }> {
  const sop = dicomParser.parseDicom(bytes, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
  const url = `${server.dicomweb}/studies/${sop.string('x0020000d')}/series/${sop.string('x0020000e')}/instances/${sop.string('x00080018')}`;
  const response = await adminFetch(url, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  expect(response.status).toBe(200);
  const file = (await readMultipartResponse(response))[0]!.body;
  const name = path.join(work, `${newUid()}.dcm`);
  await fs.writeFile(name, file);
  return { file, dump: (await run('dcmdump', ['+U8', '-M', name])).stdout };
}

/** The pixel data's value, for comparing: the correction never touches it. */
function pixelData(file: Buffer): Buffer {
  const element = dicomParser.parseDicom(file).elements.x7fe00010!;
  return Buffer.from(file.subarray(element.dataOffset, element.dataOffset + element.length));
}

const ORDER = { patient_id: 'PAT-0042', patient_name: 'Müller^Jürgen', accession_number: 'ACC-9', patient_birth_date: '1961-03-04', reason: 'CD from St Mary\'s, matched to order ACC-9' };

describe('DICOM files matched to the order', () => {
  it('set the order\'s values, keep the old ones in the Original Attributes Sequence, and keep UIDs and pixels', async () => {
    const original = syntheticInstance({ patientID: 'STM-77', patientName: 'Mueller^J', accessionNumber: 'X1' });
    const { status, body } = await send([{ name: 'IM0001', bytes: original }], ORDER);
    expect(status, JSON.stringify(body)).toBe(200);
    expect(body.files[0].status).toBe('stored');
    expect(body.files[0].corrected.sort()).toEqual(['AccessionNumber', 'PatientBirthDate', 'PatientID', 'PatientName']);
    const { file, dump } = await stored(original);
    expect(dump).toMatch(/\(0010,0020\) LO \[PAT-0042\]/);
    expect(dump).toMatch(/\(0010,0010\) PN \[Müller\^Jürgen\]/);
    expect(dump).toMatch(/\(0010,0030\) DA \[19610304\]/);
    expect(dump).toMatch(/\(0008,0050\) SH \[ACC-9\]/);
    // The old values, each once, inside the new item.
    const item = dump.slice(dump.indexOf('(0400,0561)'));
    expect(item).toMatch(/\(0400,0550\) SQ/);
    expect(item).toMatch(/\(0010,0020\) LO \[STM-77\]/);
    expect(item).toMatch(/\(0010,0010\) PN \[Mueller\^J\]/);
    expect(item).toMatch(/\(0008,0050\) SH \[X1\]/);
    expect(item).toMatch(/\(0400,0563\) LO \[PACS-lite key:/);
    expect(item).toMatch(/\(0400,0565\) CS \[CORRECT\]/);
    expect(pixelData(file).equals(pixelData(original))).toBe(true);
    const found = (await (await adminFetch(`${server.dicomweb}/studies?PatientID=PAT-0042`)).json()) as unknown[];
    expect(found).toHaveLength(1);
    // The reason is in the audit trail with the upload, and the upload in the log.
    const audit = (await (await adminFetch(`${server.url}/api/v1/audit?limit=20`)).json()) as Array<{ path: string; query: string }>;
    expect(audit.some((e) => e.path === '/api/v1/uploads' && decodeURIComponent(e.query.replaceAll('+', ' ')).includes('matched to order ACC-9'))).toBe(true);
    const log = (await (await adminFetch(`${server.url}/api/v1/uploads?patient_id=PAT-0042`)).json()) as any[];
    expect(log[0]).toMatchObject({ door: 'form', stored: 1 });

    // Corrected again: a second item, the first kept.
    const again = await send([{ name: 'IM0001', bytes: file }], { accession_number: 'ACC-10', reason: 'the order was replaced' });
    expect(again.body.files[0]).toMatchObject({ status: 'stored', corrected: ['AccessionNumber'] });
    const twice = (await stored(original)).dump;
    expect(twice.match(/\(0400,0565\) CS \[CORRECT\]/g)).toHaveLength(2);
    expect(twice).toMatch(/\(0008,0050\) SH \[ACC-9\]/);
  });

  it('correct files as dcmtk writes them: Implicit VR without a character set, and JPEG, each kept in its syntax or made explicit', async () => {
    const base = syntheticInstance({ patientID: 'STM-78', rows: 32, columns: 32 });
    const implicit = await modified(await withTool(base, 'dcmconv', ['+ti']), ['-nb', '-ea', '(0008,0005)']);
    const jpeg = await withTool(syntheticInstance({ patientID: 'STM-79', rows: 32, columns: 32, extra: [{ tag: '00280100', vr: 'US', value: 8 }, { tag: '00280101', vr: 'US', value: 8 }, { tag: '00280102', vr: 'US', value: 7 }] }), 'dcmcjpeg', ['+eb']);
    const { status, body } = await send([{ name: 'implicit.dcm', bytes: implicit }, { name: 'jpeg.dcm', bytes: jpeg }], { patient_name: 'Weiß^Grete', reason: 'name as the EMR has it' });
    expect(status, JSON.stringify(body)).toBe(200);
    const fromImplicit = await stored(implicit);
    expect(fromImplicit.dump).toMatch(/\(0002,0010\) UI =LittleEndianExplicit/);
    expect(fromImplicit.dump).toMatch(/\(0008,0005\) CS \[ISO_IR 192\]/);
    expect(fromImplicit.dump).toMatch(/\(0010,0010\) PN \[Weiß\^Grete\]/);
    expect(pixelData(fromImplicit.file).equals(pixelData(implicit))).toBe(true);
    const fromJpeg = await stored(jpeg);
    expect(fromJpeg.dump).toMatch(/\(0002,0010\) UI =JPEGBaseline/);
    expect(fromJpeg.dump).toMatch(/\(0010,0010\) PN \[Weiß\^Grete\]/);
    // dcmdjpeg still decodes it: the encapsulated pixel data is whole.
    const decoded = path.join(work, 'decoded.dcm');
    const sent = path.join(work, 'jpeg-stored.dcm');
    await fs.writeFile(sent, fromJpeg.file);
    await run('dcmdjpeg', [sent, decoded]);
  });

  it('store files as sent when no value is given, and refuse what cannot be corrected, each with its reason', async () => {
    const plain = syntheticInstance({ patientID: 'AS-SENT' });
    const asSent = await send([{ name: 'plain.dcm', bytes: plain }], {});
    expect(asSent.status).toBe(200);
    expect((await stored(plain)).file.equals(plain)).toBe(true);

    const noReason = await send([{ name: 'a.dcm', bytes: syntheticInstance() }], { patient_id: 'X' });
    expect(noReason.status).toBe(400);
    expect(noReason.body.detail).toMatch(/say why the values are corrected in the reason field/);
    const unknown = await send([{ name: 'a.dcm', bytes: syntheticInstance() }], { study_uid: '1.2.3', reason: 'test' });
    expect(unknown.status).toBe(400);
    expect(unknown.body.detail).toMatch(/unknown field "study_uid"/);

    const bigEndian = await withTool(syntheticInstance({ patientID: 'BE-1' }), 'dcmconv', ['+tb']);
    const mixed = await send(
      [
        { name: 'good.dcm', bytes: syntheticInstance({ patientID: 'GOOD-1' }) },
        { name: 'big-endian.dcm', bytes: bigEndian },
        { name: 'notes.txt', bytes: Buffer.from('not a DICOM file at all, just some words') },
      ],
      { patient_id: 'PAT-7', reason: 'matched by hand' },
    );
    expect(mixed.status).toBe(202);
    expect(mixed.body.files.map((f: any) => f.status)).toEqual(['stored', 'refused', 'refused']);
    expect(mixed.body.files[1].reason).toMatch(/big endian\) cannot be corrected here; send it in Explicit VR Little Endian/);
    expect(mixed.body.files[2].reason).toMatch(/not a DICOM file/);
  });
});
