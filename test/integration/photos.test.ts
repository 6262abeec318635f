import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid, writePart10 } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * Photos and PDFs as DICOM (issue 15), over HTTP as an EMR or a phone app sends them: each file becomes an instance
 * that dcmtk reads, QIDO finds and the server renders; what is not the image it claims is refused with the reason,
 * and a bad form stores nothing.
 */

const UID_ROOT = '1.2.826.0.1.3680043.10.999';
const VL_PHOTOGRAPHIC = '1.2.840.10008.5.1.4.1.1.77.1.4';
const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';
let server: RunningServer;
/** With a small PACS_MAX_INSTANCE_BYTES. */
let small: RunningServer;
let work: string;

beforeAll(async () => {
  [server, small] = await Promise.all([startServer({ env: { PACS_UID_ROOT: UID_ROOT } }), startServer({ env: { PACS_MAX_INSTANCE_BYTES: '2MiB' } })]);
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-photos-'));
});
afterAll(async () => {
  const failures = server?.logs.filter((l) => l.includes('unhandled error')) ?? [];
  if (failures.length) console.error(failures.join('\n'));
  await Promise.all([server?.stop(), small?.stop()]);
  await fs.rm(work, { recursive: true, force: true });
});

type Sent = { name: string; type: string; bytes: Buffer };

async function send(files: Sent[], fields: Record<string, string>, url = `${server.url}/api/v1/photos`) {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const f of files) form.append('file', new Blob([new Uint8Array(f.bytes)], { type: f.type }), f.name);
  const response = await adminFetch(url, { method: 'POST', body: form });
  return { status: response.status, body: (await response.json()) as any };
}

const PATIENT = { patient_id: 'PHOTO-1', patient_name: 'Müller^Jürgen', patient_birth_date: '1961-03-04', patient_sex: 'M', accession_number: 'ACC-PH-1', study_description: 'Wound check', body_part: 'foot' };

/** A photo as a phone takes it: baseline JPEG, 4:2:0, with EXIF that names the camera's owner. */
async function phonePhoto(o: { orientation?: number; progressive?: boolean } = {}): Promise<Buffer> {
  const image = sharp({ create: { width: 64, height: 48, channels: 3, background: { r: 200, g: 60, b: 40 } } }).jpeg({ progressive: o.progressive ?? false, chromaSubsampling: '4:2:0' });
  return image.withExif({ IFD0: { Artist: 'SECRET-OWNER-NAME' } }).withMetadata(o.orientation ? { orientation: o.orientation } : {}).toBuffer();
}

const PDF = Buffer.from('%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');

async function retrieve(studyUid: string, seriesUid: string, sopUid: string): Promise<Buffer> {
  const response = await adminFetch(`${server.dicomweb}/studies/${studyUid}/series/${seriesUid}/instances/${sopUid}`, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  expect(response.status).toBe(200);
  return (await readMultipartResponse(response))[0]!.body;
}

async function dcmdump(bytes: Buffer): Promise<string> {
  const file = path.join(work, `${Math.random().toString(36).slice(2)}.dcm`);
  await fs.writeFile(file, bytes);
  return execFileSync('dcmdump', ['+U8', '-M', file], { encoding: 'utf8' });
}

describe('photos and documents as a new study', () => {
  let answer: any;
  const jpeg: Sent = { name: 'heel.jpg', type: 'image/jpeg', bytes: Buffer.alloc(0) };

  beforeAll(async () => {
    jpeg.bytes = await phonePhoto();
    const sent = [
      jpeg,
      { name: 'heel-rotated.jpg', type: 'image/jpeg', bytes: await phonePhoto({ orientation: 6 }) },
      { name: 'heel-progressive.jpg', type: 'image/jpeg', bytes: await phonePhoto({ progressive: true }) },
      { name: 'scan.png', type: 'image/png', bytes: await sharp({ create: { width: 30, height: 20, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 0.5 } } }).png().toBuffer() },
      { name: 'referral.pdf', type: 'application/pdf', bytes: PDF },
    ];
    ({ body: answer } = await send(sent, PATIENT).then((r) => {
      expect(r.status, JSON.stringify(r.body)).toBe(200);
      return r;
    }));
  });

  it('stores each file as an instance under the clinic\'s UID root, photos in one series and documents in another', () => {
    expect(answer).toMatchObject({ stored: 5, already_stored: 0, refused: 0 });
    expect(answer.study_uid.startsWith(`${UID_ROOT}.`)).toBe(true);
    for (const f of answer.files) {
      expect(f.status).toBe('stored');
      expect(f.sop_instance_uid.startsWith(`${UID_ROOT}.`)).toBe(true);
      expect(f.sop_instance_uid.length).toBeLessThanOrEqual(64);
    }
    const classes = answer.files.map((f: any) => f.sop_class_uid);
    expect(classes).toEqual([VL_PHOTOGRAPHIC, VL_PHOTOGRAPHIC, VL_PHOTOGRAPHIC, VL_PHOTOGRAPHIC, ENCAPSULATED_PDF]);
    expect(new Set(answer.files.slice(0, 4).map((f: any) => f.series_uid)).size).toBe(1);
    expect(answer.files[4].series_uid).not.toBe(answer.files[0].series_uid);
  });

  it('keeps a baseline JPEG as it was sent, without its EXIF, as JPEG Baseline YBR_FULL_422 that dcmtk reads', async () => {
    const f = answer.files[0];
    const stored = await retrieve(answer.study_uid, f.series_uid, f.sop_instance_uid);
    const dump = await dcmdump(stored);
    expect(dump).toContain('=JPEGBaseline');
    expect(dump).toMatch(/\(0028,0004\) CS \[YBR_FULL_422\]/);
    expect(dump).toMatch(/\(0028,0010\) US 48/);
    expect(dump).toMatch(/\(0028,0011\) US 64/);
    expect(dump).toMatch(/\(0008,0060\) CS \[XC\]/);
    expect(dump).toMatch(/\(0010,0010\) PN \[Müller\^Jürgen\]/);
    expect(dump).toMatch(/\(0008,0005\) CS \[ISO_IR 192\]/);
    expect(dump).toMatch(/\(0018,0015\) CS \[FOOT\]/);
    expect(dump).toMatch(/\(0028,2110\) CS \[01\]/);
    expect(stored.includes(Buffer.from('SECRET-OWNER-NAME'))).toBe(false);
    // The image itself is the sender's, byte for byte, from the start of its scan.
    const sos = jpeg.bytes.indexOf(Buffer.from([0xff, 0xda]));
    expect(stored.includes(jpeg.bytes.subarray(sos))).toBe(true);
    // And dcmtk decodes it.
    const file = path.join(work, 'baseline.dcm');
    await fs.writeFile(file, stored);
    execFileSync('dcmdjpeg', [file, path.join(work, 'baseline-decoded.dcm')]);
  });

  it('turns a photo taken on its side upright, and keeps a progressive JPEG and a PNG as pixels, losslessly', async () => {
    const [, rotated, progressive, png] = answer.files;
    const dump = async (f: any) => dcmdump(await retrieve(answer.study_uid, f.series_uid, f.sop_instance_uid));
    const r = await dump(rotated);
    expect(r).toContain('=LittleEndianExplicit');
    expect(r).toMatch(/\(0028,0010\) US 64/); // 48 wide before turning
    expect(r).toMatch(/\(0028,0011\) US 48/);
    expect(r).toMatch(/\(0028,0004\) CS \[RGB\]/);
    const p = await dump(progressive);
    expect(p).toContain('=LittleEndianExplicit');
    const n = await dump(png);
    expect(n).toMatch(/\(0028,0002\) US 3/);
    expect(n).toMatch(/\(0028,2110\) CS \[00\]/);
  });

  it('keeps the PDF as Encapsulated PDF that dcmtk gives back byte for byte', async () => {
    const f = answer.files[4];
    const stored = await retrieve(answer.study_uid, f.series_uid, f.sop_instance_uid);
    const file = path.join(work, 'pdf.dcm');
    await fs.writeFile(file, stored);
    execFileSync('dcm2pdf', [file, path.join(work, 'out.pdf')]);
    const back = await fs.readFile(path.join(work, 'out.pdf'));
    expect(back.subarray(0, PDF.length).equals(PDF)).toBe(true);
    expect(await dcmdump(stored)).toMatch(/\(0008,0060\) CS \[DOC\]/);
  });

  it('renders the PDF as the document itself, without the padding DICOM adds to its odd length', async () => {
    const f = answer.files[4];
    const url = `${server.dicomweb}/studies/${answer.study_uid}/series/${f.series_uid}/instances/${f.sop_instance_uid}`;
    for (const accept of ['application/pdf', '*/*']) {
      const rendered = await adminFetch(`${url}/rendered`, { headers: { Accept: accept } });
      expect(rendered.status, await rendered.clone().text()).toBe(200);
      expect(rendered.headers.get('content-type')).toBe('application/pdf');
      expect(Buffer.from(await rendered.arrayBuffer()).equals(PDF)).toBe(true);
    }
    const asImage = await adminFetch(`${url}/rendered`, { headers: { Accept: 'image/jpeg' } });
    expect(asImage.status).toBe(406);
    expect(await asImage.text()).toMatch(/rendered as application\/pdf/);
    // A thumbnail is a picture: a document has none.
    expect((await adminFetch(`${url}/thumbnail`)).status).toBe(404);
    // A larger document is bulk data, read from the stored file: the same.
    const long = Buffer.concat([PDF.subarray(0, 9), Buffer.from(`%${'x'.repeat(4000)}\n`), PDF.subarray(9)]);
    const sent = await send([{ name: 'long.pdf', type: 'application/pdf', bytes: long }], { ...PATIENT, patient_id: 'PHOTO-PDF' });
    expect(sent.status).toBe(200);
    const g = sent.body.files[0];
    const rendered = await adminFetch(`${server.dicomweb}/studies/${sent.body.study_uid}/series/${g.series_uid}/instances/${g.sop_instance_uid}/rendered`);
    expect(rendered.headers.get('content-type')).toBe('application/pdf');
    expect(Buffer.from(await rendered.arrayBuffer()).equals(long)).toBe(true);
  });

  it('never renders a document a sender says is HTML as HTML: only a PDF is rendered', async () => {
    const [study, series, sop] = [newUid(), newUid(), newUid()];
    const page = Buffer.from('<html><script>document.cookie</script></html>');
    const file = writePart10(
      [
        { tag: '00080016', vr: 'UI', value: ENCAPSULATED_PDF },
        { tag: '00080018', vr: 'UI', value: sop },
        { tag: '00100020', vr: 'LO', value: 'HTML-1' },
        { tag: '0020000D', vr: 'UI', value: study },
        { tag: '0020000E', vr: 'UI', value: series },
        { tag: '00420012', vr: 'LO', value: 'text/html' },
        { tag: '00420011', vr: 'OB', value: page },
      ],
      { transferSyntaxUID: '1.2.840.10008.1.2.1', sopClassUID: ENCAPSULATED_PDF, sopInstanceUID: sop },
    );
    expect((await stow(server.dicomweb, [file])).status).toBe(200);
    const rendered = await adminFetch(`${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}/rendered`, { headers: { Accept: 'text/html,*/*' } });
    expect(rendered.status).toBe(404);
    expect(rendered.headers.get('content-type')).not.toMatch(/html/);
  });

  it('is found by QIDO like any study, rendered, and in the upload log', async () => {
    const studies = await (await adminFetch(`${server.dicomweb}/studies?PatientID=PHOTO-1`, { headers: { Accept: 'application/dicom+json' } })).json();
    expect(studies.map((s: any) => s['0020000D'].Value[0])).toEqual([answer.study_uid]);
    expect(studies[0]['00080061'].Value).toEqual(['DOC', 'XC']);
    const f = answer.files[0];
    const rendered = await adminFetch(`${server.dicomweb}/studies/${answer.study_uid}/series/${f.series_uid}/instances/${f.sop_instance_uid}/rendered`, { headers: { Accept: 'image/png' } });
    expect(rendered.status).toBe(200);
    const pixels = await sharp(Buffer.from(await rendered.arrayBuffer())).raw().toBuffer({ resolveWithObject: true });
    expect([pixels.info.width, pixels.info.height]).toEqual([64, 48]);
    // The red of the photo survives the trip (YBR_FULL_422 read as such, not as RGB).
    expect(pixels.data[0]).toBeGreaterThan(150);
    expect(pixels.data[2]).toBeLessThan(100);
    const log = (await (await adminFetch(`${server.url}/api/v1/uploads?study=${answer.study_uid}`)).json()) as any[];
    expect(log).toHaveLength(1);
    expect(log[0]).toMatchObject({ door: 'photos', stored: 5, patient_ids: ['PHOTO-1'] });
  });
});

describe('photos added to a stored study', () => {
  it('take the study\'s patient and order, in a new series numbered after the study\'s', async () => {
    const studyUID = '1.2.826.0.1.3680043.10.999.77';
    expect((await stow(server.dicomweb, syntheticSeries(2, { studyUID, patientID: 'CT-PAT', patientName: 'Doe^Jane', accessionNumber: 'ACC-CT', rows: 16, columns: 16 }))).status).toBe(200);
    const { status, body } = await send([{ name: 'skin.jpg', type: 'image/jpeg', bytes: await phonePhoto() }], { series_description: 'Skin, left arm' }, `${server.url}/api/v1/studies/${studyUID}/photos`);
    expect(status, JSON.stringify(body)).toBe(200);
    expect(body.study_uid).toBe(studyUID);
    const dump = await dcmdump(await retrieve(studyUID, body.files[0].series_uid, body.files[0].sop_instance_uid));
    expect(dump).toMatch(/\(0010,0020\) LO \[CT-PAT\]/);
    expect(dump).toMatch(/\(0010,0010\) PN \[Doe\^Jane\]/);
    expect(dump).toMatch(/\(0008,0050\) SH \[ACC-CT\]/);
    expect(dump).toMatch(/\(0008,103e\) LO \[Skin, left arm\]/);
    expect(dump).toMatch(/\(0020,0011\) IS \[2\]/);
    // The patient's details come from the study; the form may not set them.
    const refused = await send([{ name: 'skin.jpg', type: 'image/jpeg', bytes: await phonePhoto() }], { patient_id: 'OTHER' }, `${server.url}/api/v1/studies/${studyUID}/photos`);
    expect(refused.status).toBe(400);
    expect(refused.body.detail).toMatch(/unknown field "patient_id"/);
    // Refused before the form is read: the client still gets the reason, not a broken pipe under its upload.
    const missing = await send([{ name: 'skin.jpg', type: 'image/jpeg', bytes: Buffer.concat([await phonePhoto(), Buffer.alloc(512 * 1024)]) }], {}, `${server.url}/api/v1/studies/1.2.3.4/photos`);
    expect(missing.status).toBe(404);
    expect(missing.body.detail).toMatch(/no study with that UID/);
  });
});

describe('bad input', () => {
  it('refuses files that are not what they claim, each with its reason, and stores the good ones', async () => {
    const photo = await phonePhoto();
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#000' } }).png().toBuffer();
    const { status, body } = await send(
      [
        { name: 'good.jpg', type: 'image/jpeg', bytes: photo },
        { name: 'png-as.jpg', type: 'image/jpeg', bytes: png },
        { name: 'cut.jpg', type: 'image/jpeg', bytes: photo.subarray(0, Math.floor(photo.length / 2)) },
        { name: 'empty.jpg', type: 'image/jpeg', bytes: Buffer.alloc(0) },
        { name: 'notes.pdf', type: 'application/pdf', bytes: Buffer.from('just some text') },
        { name: 'anim.gif', type: 'image/gif', bytes: Buffer.from('GIF89a') },
      ],
      { patient_id: 'BAD-1' },
    );
    expect(status).toBe(202);
    expect(body.files.map((f: any) => f.status)).toEqual(['stored', 'refused', 'refused', 'refused', 'refused', 'refused']);
    const reasons = body.files.slice(1).map((f: any) => f.reason);
    expect(reasons[0]).toMatch(/sent as image\/jpeg but is a PNG image/);
    expect(reasons[1]).toMatch(/cut short/);
    expect(reasons[2]).toMatch(/empty/);
    expect(reasons[3]).toMatch(/does not begin as a PDF does/);
    expect(reasons[4]).toMatch(/image\/gif is not a photo or a document this server takes/);
  });

  it.each([
    [{ patient_id: 'X'.repeat(1000) }, /patient_id is at most 64 characters/],
    [{ patient_name: 'No^Id' }, /patient_id/],
    [{ patient_id: 'A\\B' }, /backslash/],
    [{ patient_id: 'P', patient_birth_date: '2026-02-30' }, /not a calendar date/],
    [{ patient_id: 'P', patient_sex: 'X' }, /patient_sex/],
    [{ patient_id: 'P', hospital: 'X' }, /unknown field "hospital"/],
  ])('refuses the form %j whole, storing nothing', async (fields, reason) => {
    const before = (await (await adminFetch(`${server.url}/api/v1/uploads?limit=1000`)).json()).length;
    const { status, body } = await send([{ name: 'good.jpg', type: 'image/jpeg', bytes: await phonePhoto() }], fields as Record<string, string>);
    expect(status).toBe(400);
    expect(body.detail).toMatch(reason);
    expect(body.detail).toMatch(/nothing was stored/);
    expect((await (await adminFetch(`${server.url}/api/v1/uploads?limit=1000`)).json()).length).toBe(before);
  });

  it('refuses a file over PACS_MAX_INSTANCE_BYTES with 413, storing nothing', async () => {
    const big = { name: 'huge.pdf', type: 'application/pdf', bytes: Buffer.concat([PDF, Buffer.alloc(3 * 1024 * 1024)]) };
    const { status, body } = await send([big], { patient_id: 'BIG-1' }, `${small.url}/api/v1/photos`);
    expect(status).toBe(413);
    expect(body.detail).toMatch(/huge\.pdf is larger than the 2 MiB limit/);
    expect(await (await adminFetch(`${small.url}/api/v1/uploads`)).json()).toEqual([]);
  });

  it('refuses a form without files, a body that is not a form, and a credential that may not upload', async () => {
    expect((await send([], { patient_id: 'P' })).status).toBe(400);
    const json = await adminFetch(`${server.url}/api/v1/photos`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '' });
    expect(json.status).toBe(415);
    const key = await (await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'reader', role: 'read' }) })).json();
    const form = new FormData();
    form.append('patient_id', 'P');
    form.append('file', new Blob([new Uint8Array(await phonePhoto())], { type: 'image/jpeg' }), 'x.jpg');
    expect((await fetch(`${server.url}/api/v1/photos`, { method: 'POST', body: form, headers: { Authorization: `Bearer ${key.key}` } })).status).toBe(403);
  });
});
