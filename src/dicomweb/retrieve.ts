import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { Tag } from '../dicom/tags.js';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import { HttpError, NotFound } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';

/** Bounds of a read: a deflated data set is inflated on the way out, never past this (PACS_MAX_INSTANCE_BYTES). */
export type ReadLimits = { maxInflatedBytes: number };

/** Attributes read whole to find bulk data in them: everything before the pixel data, never more than this. */
const MAX_HEAD_BYTES = 64 * 1024 * 1024;
/** Where a deflated file's meta information is looked for: it is a few hundred bytes in practice. */
const META_BYTES = 64 * 1024;
/** A range length that reaches the end of the data set, wherever that is. */
const TO_THE_END = Number.MAX_SAFE_INTEGER;

/** One frame as a stream of chunks, and its length. */
export type FrameBytes = { length: number; chunks: AsyncIterable<Buffer> };

/**
 * Frames as stored: ranged reads of their byte ranges streamed in chunks, no parsing (DESIGN decisions 3 and 6),
 * so a frame of hundreds of MB costs a few chunks of memory. Each frame's object is opened before the frame is
 * yielded: a missing object fails before its first byte goes out.
 */
export async function* readFrames(store: ObjectStore, instance: StoredInstance, numbers: number[], limits: ReadLimits): AsyncGenerator<FrameBytes> {
  const ranges = JSON.parse(instance.frames) as FrameRange[];
  const swap16 = instance.transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian && bitsAllocated(instance) === 16;
  for (const n of numbers) {
    const frame = ranges[n - 1];
    if (!frame) throw new NotFound(`frame ${n} has no pixel data`);
    const chunks = instance.inflated ? await inflatedRanges(store, instance, frame, limits) : await storedRanges(store, instance.objectKey, frame);
    // Frames are served as Explicit VR Little Endian: big endian words are turned around.
    yield { length: frame.reduce((sum, [, length]) => sum + length, 0), chunks: swap16 ? swapped16(chunks) : chunks };
  }
}

/** One frame in one buffer (rendering needs all of it), filled as it streams in rather than joined at the end. */
export async function readFrame(store: ObjectStore, instance: StoredInstance, n: number, limits: ReadLimits): Promise<Buffer> {
  for await (const { length, chunks } of readFrames(store, instance, [n], limits)) {
    const bytes = Buffer.allocUnsafe(length);
    let filled = 0;
    for await (const chunk of chunks) filled += chunk.copy(bytes, filled);
    return bytes.subarray(0, filled);
  }
  throw new NotFound(`frame ${n} has no pixel data`);
}

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

/** The byte ranges of a stored object one after the other; the first is opened before this resolves. */
async function storedRanges(store: ObjectStore, key: string, ranges: FrameRange): Promise<AsyncIterable<Buffer>> {
  const [[offset, length] = [0, 0], ...rest] = ranges;
  const first = await store.get(key, { offset, length });
  return (async function* () {
    yield* first as AsyncIterable<Buffer>;
    for (const [o, l] of rest) yield* (await store.get(key, { offset: o, length: l })) as AsyncIterable<Buffer>;
  })();
}

/**
 * Ranges of a deflated file's data set (offsets count the preamble and meta information, then the inflated bytes),
 * inflated by zlib on its thread pool as they stream by, and never past `limits.maxInflatedBytes`.
 */
async function inflatedRanges(store: ObjectStore, instance: StoredInstance, ranges: FrameRange, limits: ReadLimits): Promise<AsyncIterable<Buffer>> {
  const start = await dataSetStart(store, instance);
  const deflated = await store.get(instance.objectKey, { offset: start, length: instance.size - start });
  return (async function* () {
    const inflater = createInflateRaw({ chunkSize: 256 * 1024 });
    const flowing = pipeline(deflated, inflater).catch(() => undefined); // its errors surface through the iterator below
    let at = start;
    let next = 0;
    try {
      for await (const chunk of inflater as AsyncIterable<Buffer>) {
        const end = at + chunk.length;
        if (end > limits.maxInflatedBytes) throw new HttpError(413, 'too-large', `the deflated data set inflates to more than ${limits.maxInflatedBytes} bytes (PACS_MAX_INSTANCE_BYTES)`);
        while (next < ranges.length) {
          const [offset, length] = ranges[next]!;
          if (offset >= end) break;
          const from = Math.max(offset, at);
          const to = Math.min(offset + length, end);
          if (to > from) yield chunk.subarray(from - at, to - at);
          if (offset + length > end) break;
          next++;
        }
        at = end;
        if (next === ranges.length) return;
      }
      if (next < ranges.length && ranges[next]![1] !== TO_THE_END) throw new NotFound('the deflated data set ends before the frame does');
    } finally {
      inflater.destroy();
      deflated.destroy();
      await flowing;
    }
  })();
}

/** Where a deflated file's data set begins: after its meta information (PS3.10 7.1). */
async function dataSetStart(store: ObjectStore, instance: StoredInstance): Promise<number> {
  const prefix = await store.read(instance.objectKey, { offset: 0, length: Math.min(instance.size, META_BYTES) });
  const meta = dicomParser.readPart10Header(prefix);
  return meta.elements['x00020010'] ? (meta as unknown as { position: number }).position : 132;
}

/** The file up to its pixel data (the whole file when it has none), inflated when it is deflated. */
async function attributesBeforePixelData(store: ObjectStore, instance: StoredInstance, limits: ReadLimits): Promise<Buffer> {
  const firstFrame = (JSON.parse(instance.frames) as FrameRange[])[0]?.[0]?.[0];
  if (!instance.inflated) {
    const length = firstFrame ?? instance.size;
    if (length > MAX_HEAD_BYTES) throw new HttpError(413, 'too-large', `the attributes before the pixel data take ${length} bytes, more than this server reads whole to find bulk data in`);
    return store.read(instance.objectKey, { offset: 0, length });
  }
  const start = await dataSetStart(store, instance);
  const before = await store.read(instance.objectKey, { offset: 0, length: start });
  const chunks: Buffer[] = [before];
  const bound = Math.min(limits.maxInflatedBytes, MAX_HEAD_BYTES);
  for await (const chunk of await inflatedRanges(store, instance, [[start, firstFrame === undefined ? TO_THE_END : firstFrame - start]], { maxInflatedBytes: bound })) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function bitsAllocated(instance: StoredInstance): number {
  const json = JSON.parse(instance.json) as Record<string, { Value?: number[] }>;
  return json[Tag.BitsAllocated]?.Value?.[0] ?? 16;
}

/** 16-bit words turned around as they stream by; a byte left over at a chunk's end waits for the next chunk. */
async function* swapped16(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let carry: Buffer | undefined;
  for await (const chunk of chunks) {
    const bytes = carry ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
    const even = bytes.length & ~1;
    carry = even < bytes.length ? bytes.subarray(even) : undefined;
    if (even > 0) yield bytes.subarray(0, even).swap16();
  }
  if (carry) yield carry;
}
