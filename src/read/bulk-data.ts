import dicomParser from 'dicom-parser';
import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { Tag } from '../dicom/tags.js';
import { HttpError, NotFound } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import { collect, type ReadLimits } from './data-set-ranges.js';
import { dataSetStart, inflatedRanges, TO_THE_END } from './deflated.js';
import { readFrames } from './frames.js';

/** Attributes read whole to find bulk data in them: everything before the pixel data, never more than this. */
const MAX_HEAD_BYTES = 64 * 1024 * 1024;

/**
 * Bulk data by its path of tags and item indices, as written into BulkDataURIs at ingest (for example `7FE00010`
 * or `00540016/0/00181074`), as a stream. Pixel data streams frame after frame; other bulk data is found in the
 * attributes before the pixel data, which are read (and, for a deflated file, inflated) up to there only.
 */
export async function readBulkData(store: ObjectStore, instance: StoredInstance, path: string, limits: ReadLimits): Promise<AsyncIterable<Buffer>> {
  const steps = path.split('/').filter(Boolean);
  if (steps.length === 0 || steps.length % 2 === 0 || !steps.every((s, i) => (i % 2 === 0 ? /^[0-9A-F]{8}$/i.test(s) : /^\d+$/.test(s)))) {
    throw new NotFound(`${path} is not a bulk data path of this server`);
  }
  const top = steps[0]!.toUpperCase();
  if (steps.length === 1 && (top === Tag.PixelData || top === Tag.FloatPixelData || top === Tag.DoubleFloatPixelData)) {
    const all = Array.from({ length: instance.numberOfFrames }, (_, i) => i + 1);
    const frames = readFrames(store, instance, all, limits);
    // The first frame is opened now, so that a missing object is a status rather than a body cut short.
    const first = await frames.next();
    return (async function* () {
      if (first.done) return;
      yield* first.value.chunks;
      for await (const frame of frames) yield* frame.chunks;
    })();
  }
  const head = await attributesBeforePixelData(store, instance, limits);
  // Offsets refer to the meta information and the data set as inflated, which is what `head` holds.
  let dataSet = dicomParser.parseDicom(head, { untilTag: 'x7fe00010', inflater: (bytes: Buffer) => bytes } as unknown as dicomParser.ParseDicomOptions);
  for (let i = 0; i < steps.length; i += 2) {
    const element = dataSet.elements[`x${steps[i]!.toLowerCase()}`];
    if (!element) break;
    if (i === steps.length - 1) {
      const value = head.subarray(element.dataOffset, element.dataOffset + element.length);
      return (async function* () {
        yield value;
      })();
    }
    const item = element.items?.[Number(steps[i + 1])];
    if (!item?.dataSet) break;
    dataSet = item.dataSet;
  }
  throw new NotFound(`the instance has no bulk data at ${path}`);
}

/** Stored JSON names bulk data by URI (relative or absolute); readBulkData wants the path after `/bulkdata/`. */
export function bulkDataPath(uri: string): string {
  const marker = '/bulkdata/';
  const at = uri.lastIndexOf(marker);
  return at < 0 ? uri : uri.slice(at + marker.length);
}

/** The file up to its pixel data (the whole file when it has none), inflated when it is deflated. */
async function attributesBeforePixelData(store: ObjectStore, instance: StoredInstance, limits: ReadLimits): Promise<Buffer> {
  const firstFrame = (JSON.parse(instance.frames) as FrameRange[])[0]?.[0]?.[0];
  if (!instance.inflated) {
    const length = firstFrame ?? instance.size;
    if (length > MAX_HEAD_BYTES) throw new HttpError(413, 'too-large', `the attributes before the pixel data take ${length} bytes, more than this server reads whole to find bulk data in`);
    return collect(await store.get(instance.objectKey, { offset: 0, length }), length);
  }
  const start = await dataSetStart(store, instance);
  const before = await collect(await store.get(instance.objectKey, { offset: 0, length: start }), start);
  const chunks: Buffer[] = [before];
  const bound = Math.min(limits.maxInflatedBytes, MAX_HEAD_BYTES);
  for await (const chunk of await inflatedRanges(store, instance, [[start, firstFrame === undefined ? TO_THE_END : firstFrame - start]], { maxInflatedBytes: bound })) chunks.push(chunk);
  return Buffer.concat(chunks);
}
