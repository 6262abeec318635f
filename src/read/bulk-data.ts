import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { toDicomJson, type BulkDataRanges, type DicomJson } from '../dicom/json.js';
import { parseStoredHead } from '../dicom/parse.js';
import { Tag } from '../dicom/tags.js';
import { HttpError, NotFound } from '../errors.js';
import { collect, dataSetRanges, type DataSetSource } from './data-set-ranges.js';
import { dataSetStart, inflatedRanges, TO_THE_END } from './deflated.js';
import { allFrames, readFrames, turnsWords } from './frames.js';

/** Attributes read whole to find bulk data in them: everything before the pixel data, never more than this. */
const MAX_HEAD_BYTES = 64 * 1024 * 1024;

/** A bulk data value on its way out: its whole length, and the bytes asked for (all of them, or `range` of them). */
export type BulkData = { length: number; range?: ValueRange; chunks: AsyncIterable<Buffer> };

/** Bytes `start` to `end` (exclusive) of a value, as asked for with an HTTP Range. */
export type ValueRange = { start: number; end: number };

/** The range of a value of some length to send (undefined: all of it); it throws when none of it can be. */
export type RangeOf = (length: number) => ValueRange | undefined;

/** True for the paths of the top-level pixel data, which streams frame after frame. */
export function isPixelDataPath(path: string): boolean {
  const key = path.replace(/^\/+|\/+$/g, '').toUpperCase();
  return key === Tag.PixelData || key === Tag.FloatPixelData || key === Tag.DoubleFloatPixelData;
}

/**
 * Bulk data by its path of tags and item indices, as written into BulkDataURIs at ingest (for example `7FE00010`
 * or `00540016/0/00181074`), as a stream: all of it, or the range `rangeOf` its length picks. Native pixel
 * data streams frame after frame; other bulk data is a ranged read of the bytes ingest recorded for it (DESIGN
 * decision 3). An instance indexed before they were recorded has the attributes before its pixel data read and
 * parsed once, and every range found there is handed to `found` to keep.
 */
export async function readBulkData(
  source: DataSetSource,
  instance: StoredInstance,
  path: string,
  found: (ranges: BulkDataRanges) => Promise<void>,
  rangeOf: RangeOf = () => undefined,
): Promise<BulkData> {
  const steps = path.split('/').filter(Boolean);
  if (steps.length === 0 || steps.length % 2 === 0 || !steps.every((s, i) => (i % 2 === 0 ? /^[0-9A-F]{8}$/i.test(s) : /^\d+$/.test(s)))) {
    throw new NotFound(`${path} is not a bulk data path of this server`);
  }
  // As ingest wrote it: tags in upper case, item indices without leading zeros.
  const key = steps.map((s, i) => (i % 2 === 0 ? s.toUpperCase() : String(Number(s)))).join('/');
  if (isPixelDataPath(key)) {
    const stored = (JSON.parse(instance.frames) as FrameRange[]).flat();
    const framesLength = stored.reduce((sum, [, length]) => sum + length, 0);
    // An odd-length value is stored with a pad byte (PS3.5 7.1.1), which is part of the value sent.
    const last = stored.at(-1);
    const value: FrameRange = framesLength % 2 === 1 && last ? [...stored, [last[0] + last[1], 1]] : stored;
    const length = framesLength + (value.length - stored.length);
    const range = rangeOf(length);
    if (!turnsWords(instance)) return { length, range, chunks: await dataSetRanges(source, instance, range ? within(value, range) : value) };
    // Big endian words are turned around frame by frame (readFrames); a range is cut from what they become.
    const frames = readFrames(source, instance, allFrames(instance));
    // The first frame is opened now, so that a missing object is a status rather than a body cut short.
    const first = await frames.next();
    const chunks = (async function* () {
      if (first.done) return;
      yield* first.value.chunks;
      for await (const frame of frames) yield* frame.chunks;
      if (value.length > stored.length) yield* await dataSetRanges(source, instance, value.slice(-1));
    })();
    return { length, range, chunks: range ? slice(chunks, range) : chunks };
  }
  const [offset, length] = instance.bulkData === null ? await parsedOnce(source, instance, key, found) : recorded(instance.bulkData, key, path);
  const range = rangeOf(length);
  const [from, count] = range ? [offset + range.start, range.end - range.start] : [offset, length];
  return { length, range, chunks: await dataSetRanges(source, instance, [[from, count]]) };
}

function recorded(bulkData: string, key: string, path: string): [number, number] {
  const range = (JSON.parse(bulkData) as BulkDataRanges)[key];
  if (!range) throw new NotFound(`the instance has no bulk data at ${path}`);
  return range;
}

/** The part of a value stored as `ranges`, one after the other, that `range` covers. */
function within(ranges: FrameRange, range: ValueRange): FrameRange {
  const out: FrameRange = [];
  let at = 0;
  for (const [offset, length] of ranges) {
    const [from, to] = [Math.max(range.start, at), Math.min(range.end, at + length)];
    if (to > from) out.push([offset + from - at, to - from]);
    at += length;
  }
  return out;
}

/** The bytes of `range` of a stream, the others read past. */
async function* slice(chunks: AsyncIterable<Buffer>, range: ValueRange): AsyncGenerator<Buffer> {
  let at = 0;
  for await (const chunk of chunks) {
    const from = Math.max(range.start - at, 0);
    const to = Math.min(range.end - at, chunk.length);
    if (to > from) yield chunk.subarray(from, to);
    at += chunk.length;
    if (at >= range.end) return;
  }
}

/** Where bulk data of an instance indexed before its ranges were lies: found in its attributes, parsed as ingest parses them. */
async function parsedOnce(source: DataSetSource, instance: StoredInstance, key: string, found: (ranges: BulkDataRanges) => Promise<void>): Promise<[number, number]> {
  const head = await attributesBeforePixelData(source, instance);
  // Offsets refer to the meta information and the data set as inflated, which is what `head` holds.
  const dataSet = parseStoredHead(head);
  const ranges: BulkDataRanges = {};
  toDicomJson(dataSet, { bulkDataBase: '', bulkDataRanges: ranges });
  await found(ranges);
  const range = ranges[key];
  if (!range) throw new NotFound(`the instance has no bulk data at ${key}`);
  return range;
}

/** The BulkDataURIs of an instance's stored JSON, nested ones too, in the order of its attributes. */
export function bulkDataUris(json: DicomJson): string[] {
  return Object.keys(json)
    .sort()
    .flatMap((tag) => {
      const attribute = json[tag]!;
      if (attribute.BulkDataURI) return [attribute.BulkDataURI];
      return attribute.vr === 'SQ' ? ((attribute.Value ?? []) as DicomJson[]).flatMap((item) => (item ? bulkDataUris(item) : [])) : [];
    });
}

/** Stored JSON names bulk data by URI (relative or absolute); readBulkData wants the path after `/bulkdata/`. */
export function bulkDataPath(uri: string): string {
  const marker = '/bulkdata/';
  const at = uri.lastIndexOf(marker);
  return at < 0 ? uri : uri.slice(at + marker.length);
}

/** The file up to its pixel data's first frame (the whole file when it has none), inflated when it is deflated. */
export async function attributesBeforePixelData({ store, limits }: DataSetSource, instance: StoredInstance): Promise<Buffer> {
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
