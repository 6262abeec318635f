import { inflateRawSync } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { Tag } from '../dicom/tags.js';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import { NotFound } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';

/** A whole object is read only for the rare cases that need it (deflated files, non-pixel bulk data). */
const MAX_WHOLE_READ = 512 * 1024 * 1024;

/** Frames as stored: ranged reads of their byte ranges, no parsing (DESIGN decision 3). */
export async function* readFrames(store: ObjectStore, instance: StoredInstance, numbers: number[]): AsyncGenerator<Buffer> {
  const ranges = JSON.parse(instance.frames) as FrameRange[];
  const whole = instance.inflated ? await inflatedDataSet(store, instance) : undefined;
  const swap16 = instance.transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian && bitsAllocated(instance) === 16;
  for (const n of numbers) {
    const frame = ranges[n - 1];
    if (!frame) throw new NotFound(`frame ${n} has no pixel data`);
    const pieces = await Promise.all(
      frame.map(([offset, length]) => (whole ? Promise.resolve(whole.subarray(offset, offset + length)) : store.read(instance.objectKey, { offset, length }))),
    );
    const bytes = pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces);
    // Frames are served as Explicit VR Little Endian: big endian words are turned around.
    yield swap16 ? Buffer.from(bytes).swap16() : bytes;
  }
}

/**
 * Bulk data by its path of tags and item indices, as written into BulkDataURIs at ingest
 * (for example `7FE00010` or `00540016/0/00181074`).
 */
export async function readBulkData(store: ObjectStore, instance: StoredInstance, path: string): Promise<Buffer> {
  const steps = path.split('/').filter(Boolean);
  if (steps.length === 0 || steps.length % 2 === 0 || !steps.every((s, i) => (i % 2 === 0 ? /^[0-9A-F]{8}$/i.test(s) : /^\d+$/.test(s)))) {
    throw new NotFound(`${path} is not a bulk data path of this server`);
  }
  const top = steps[0]!.toUpperCase();
  if (steps.length === 1 && (top === Tag.PixelData || top === Tag.FloatPixelData || top === Tag.DoubleFloatPixelData)) {
    const frames: Buffer[] = [];
    const all = Array.from({ length: instance.numberOfFrames }, (_, i) => i + 1);
    for await (const frame of readFrames(store, instance, all)) frames.push(frame);
    return Buffer.concat(frames);
  }
  // dicom-parser inflates a deflated file itself; offsets then refer to its byteArray.
  let dataSet = dicomParser.parseDicom(await wholeObject(store, instance), { untilTag: 'x7fe00010' });
  const bytes = dataSet.byteArray as Buffer;
  for (let i = 0; i < steps.length; i += 2) {
    const element = dataSet.elements[`x${steps[i]!.toLowerCase()}`];
    if (!element) break;
    if (i === steps.length - 1) return Buffer.from(bytes.subarray(element.dataOffset, element.dataOffset + element.length));
    const item = element.items?.[Number(steps[i + 1])];
    if (!item?.dataSet) break;
    dataSet = item.dataSet;
  }
  throw new NotFound(`the instance has no bulk data at ${path}`);
}

async function wholeObject(store: ObjectStore, instance: StoredInstance): Promise<Buffer> {
  if (instance.size > MAX_WHOLE_READ) throw new NotFound('this bulk data lies in an object too large to read whole');
  return store.read(instance.objectKey, { offset: 0, length: instance.size });
}

/** Deflated files are stored as received; their data set is inflated on demand (rare syntax, small files). */
async function inflatedDataSet(store: ObjectStore, instance: StoredInstance): Promise<Buffer> {
  const file = await wholeObject(store, instance);
  const meta = dicomParser.readPart10Header(file);
  const start = meta.elements['x00020010'] ? (meta as unknown as { position: number }).position : 132;
  return Buffer.concat([file.subarray(0, start), inflateRawSync(file.subarray(start))]);
}

function bitsAllocated(instance: StoredInstance): number {
  const json = JSON.parse(instance.json) as Record<string, { Value?: number[] }>;
  return json[Tag.BitsAllocated]?.Value?.[0] ?? 16;
}
