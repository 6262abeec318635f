import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { withDataSetUids } from '../fixtures/differing-meta-uids.js';
import { element } from '../fixtures/raw-elements.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * Valid files real senders make that a strict reading got wrong: native YBR_FULL_422 pixel data (two samples a
 * pixel), data sets whose every element is sent as UN (implicit data passed on as explicit, PS3.5 6.2.2), and file
 * meta information naming other UIDs than the data set (as in pydicom's rtplan.dcm, rtdose.dcm, chrJapMulti.dcm).
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
let server: RunningServer;

beforeAll(async () => {
  server = await startServer();
});

afterAll(async () => {
  await server?.stop();
});

type Change = (tag: string, vr: string, value: Buffer) => [vr: string, value: Buffer] | undefined;

/** A Part 10 file written again element by element (top level, explicit VR little endian), each as `change` says. */
function rewritten(bytes: Buffer, change: Change): Buffer {
  const ds = dicomParser.parseDicom(bytes);
  const meta: Buffer[] = [];
  const body: Buffer[] = [];
  for (const key of Object.keys(ds.elements).sort()) {
    const e = ds.elements[key]!;
    const tag = key.slice(1).toUpperCase();
    if (tag === '00020000') continue;
    const value = bytes.subarray(e.dataOffset, e.dataOffset + e.length);
    const [vr, changed] = change(tag, e.vr!, value) ?? [e.vr!, value];
    (tag.startsWith('0002') ? meta : body).push(element(tag, vr, changed));
  }
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(Buffer.concat(meta).length);
  return Buffer.concat([bytes.subarray(0, 132), element('00020000', 'UL', groupLength), ...meta, ...body]);
}

const uid = (text: string) => Buffer.from(text.length % 2 ? `${text}\0` : text, 'latin1');

async function stored(file: Buffer): Promise<void> {
  const response = await stow(server.dicomweb, [file]);
  expect(response.status, JSON.stringify(await response.clone().json())).toBe(200);
}

async function renderedPixels(url: string): Promise<Buffer> {
  const response = await adminFetch(`${url}/rendered`, { headers: { Accept: 'image/png' } });
  expect(response.status).toBe(200);
  return sharp(Buffer.from(await response.arrayBuffer())).removeAlpha().toColourspace('srgb').raw().toBuffer();
}

describe('native YBR_FULL_422', () => {
  it('is stored, its frames sized two samples a pixel, and drawn in the colours of the RGB it was made from', async () => {
    const rgb = await fs.readFile(path.join(FIXTURES, 'explicit-le-rgb.dcm'));
    const source = dicomParser.parseDicom(rgb);
    const [rows, columns] = [source.uint16('x00280010')!, source.uint16('x00280011')!];
    const px = source.elements.x7fe00010!;
    const pixels = rgb.subarray(px.dataOffset, px.dataOffset + px.length);
    // PS3.3 C.7.6.3.1.2: Y1 Y2 Cb Cr for each pair of pixels, full-range YCbCr, the pair's chroma averaged.
    const packed = Buffer.alloc(rows * columns * 2);
    for (let i = 0; i < rows * columns; i += 2) {
      const ybr = [i, i + 1].map((p) => {
        const [r, g, b] = [pixels[p * 3]!, pixels[p * 3 + 1]!, pixels[p * 3 + 2]!];
        return [0.299 * r + 0.587 * g + 0.114 * b, -0.1687 * r - 0.3313 * g + 0.5 * b + 128, 0.5 * r - 0.4187 * g - 0.0813 * b + 128];
      });
      const clamp = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
      packed.set([clamp(ybr[0]![0]!), clamp(ybr[1]![0]!), clamp((ybr[0]![1]! + ybr[1]![1]!) / 2), clamp((ybr[0]![2]! + ybr[1]![2]!) / 2)], i * 2);
    }
    const sop = '1.2.826.0.1.3680043.9.7433.99.1.1';
    const file = rewritten(rgb, (tag, vr) => {
      if (tag === '00020003' || tag === '00080018') return [vr, uid(sop)];
      if (tag === '00280004') return [vr, Buffer.from('YBR_FULL_422')];
      if (tag === '7FE00010') return [vr, packed];
      return undefined;
    });
    await stored(file);
    await stored(rgb);
    const series = `${server.dicomweb}/studies/${source.string('x0020000d')}/series/${source.string('x0020000e')}`;

    const [frame] = await readMultipartResponse(await adminFetch(`${series}/instances/${sop}/frames/1`, { headers: { Accept: 'multipart/related; type="application/octet-stream"' } }));
    expect(frame!.body.equals(packed)).toBe(true);

    const [ours, original] = [await renderedPixels(`${series}/instances/${sop}`), await renderedPixels(`${series}/instances/${source.string('x00080018')}`)];
    expect(ours.length).toBe(original.length);
    let total = 0;
    for (let i = 0; i < ours.length; i++) total += Math.abs(ours[i]! - original[i]!);
    // Only the halved chroma and rounding separate them.
    expect(total / ours.length).toBeLessThan(4);
  });
});

describe('a data set whose every element is sent as UN', () => {
  it('is answered in QIDO and metadata with the dictionary VRs, and found by its values', async () => {
    const original = await fs.readFile(path.join(FIXTURES, 'charset-latin1.dcm'));
    const ds = dicomParser.parseDicom(original);
    const sop = '1.2.826.0.1.3680043.9.7433.99.2.1';
    const file = rewritten(original, (tag, vr, value) => {
      if (tag === '00020003') return [vr, uid(sop)];
      if (tag === '00080018') return ['UN', uid(sop)];
      return tag.startsWith('0002') || tag === '7FE00010' ? undefined : ['UN', value];
    });
    expect(dicomParser.parseDicom(file).elements.x00100010!.vr).toBe('UN');
    await stored(file);

    const study = ds.string('x0020000d')!;
    const response = await adminFetch(`${server.dicomweb}/studies?PatientName=${encodeURIComponent('müller*')}&includefield=00080005`);
    expect(response.status).toBe(200);
    const [found] = await response.json();
    expect(found['0020000D']).toEqual({ vr: 'UI', Value: [study] });
    expect(found['00100010'].vr).toBe('PN');
    expect(found['00100010'].Value[0].Alphabetic).toMatch(/^Müller/);

    const metadata = await (await adminFetch(`${server.dicomweb}/studies/${study}/series/${ds.string('x0020000e')}/instances/${sop}/metadata`)).json();
    expect(metadata[0]['00080018']).toEqual({ vr: 'UI', Value: [sop] });
    expect(metadata[0]['00280010']).toEqual({ vr: 'US', Value: [ds.uint16('x00280010')] });
    expect(metadata[0]['00100010'].vr).toBe('PN');
  });
});

describe('file meta information naming other UIDs than the data set', () => {
  it("is stored as sent under the data set's UIDs, and the sender told so in a Warning", async () => {
    const original = path.join(FIXTURES, 'explicit-le.dcm');
    const meta = dicomParser.parseDicom(await fs.readFile(original));
    const [metaClass, metaInstance] = [meta.string('x00020002')!, meta.string('x00020003')!];
    const ids = { study: newUid(), series: newUid(), sop: newUid(), sopClass: '1.2.840.10008.5.1.4.1.1.2' };
    const file = await withDataSetUids(original, ids);
    const written = dicomParser.parseDicom(file);
    expect([written.string('x00020002'), written.string('x00020003'), written.string('x00080016'), written.string('x00080018')]).toEqual([metaClass, metaInstance, ids.sopClass, ids.sop]);

    const response = await stow(server.dicomweb, [file]);
    const body = await response.json();
    expect(response.status, JSON.stringify(body)).toBe(200);
    const warning = response.headers.get('warning')!;
    expect(warning).toMatch(/^199 pacs-lite "/);
    for (const named of [`MediaStorageSOPInstanceUID (0002,0003) ${metaInstance}`, `SOPInstanceUID (0008,0018) ${ids.sop}`, `MediaStorageSOPClassUID (0002,0002) ${metaClass}`, `SOPClassUID (0008,0016) ${ids.sopClass}`]) {
      expect(warning).toContain(named);
    }
    // Nothing was coerced or discarded (PS3.4 B.2.3): the instance is a plain success in the body.
    expect(body['00081198']).toBeUndefined();
    const [referenced] = body['00081199'].Value;
    expect([referenced['00081150'].Value, referenced['00081155'].Value, referenced['00081196']]).toEqual([[ids.sopClass], [ids.sop], undefined]);
    const logged = server.logs.find((line) => line.includes(metaInstance) && line.includes(ids.sop));
    expect(logged).toMatch(/file meta information names other UIDs/);

    const found = await (await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${ids.sop}&includefield=00080016`)).json();
    expect(found.map((i: any) => [i['0020000D'].Value[0], i['00080016'].Value[0]])).toEqual([[ids.study, ids.sopClass]]);
    expect(await (await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${metaInstance}`)).json()).toEqual([]);

    const retrieved = await adminFetch(`${server.dicomweb}/studies/${ids.study}/series/${ids.series}/instances/${ids.sop}`, {
      headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
    });
    const [part] = await readMultipartResponse(retrieved);
    const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
    expect(sha256(part!.body)).toBe(sha256(file));
  });
});
