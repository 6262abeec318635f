import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { InflatedCopies } from './inflated-copies.js';

/** Bounds of a read: a deflated data set is inflated on the way out, never past this (PACS_MAX_INSTANCE_BYTES). */
export type ReadLimits = { maxInflatedBytes: number };

/** Where reads take an instance's data set from: its stored object, or a deflated one's inflated copy. */
export type DataSetSource = { store: ObjectStore; copies: InflatedCopies; limits: ReadLimits };

/**
 * Byte ranges of an instance's data set as ingest recorded them (frames, bulk data), one after the other in chunks:
 * ranged reads of the stored object, or of its inflated copy when it is deflated. The first range is opened
 * before this resolves, so that a missing object is a status rather than a body cut short.
 */
export function dataSetRanges(source: DataSetSource, instance: StoredInstance, ranges: FrameRange): Promise<AsyncIterable<Buffer>> {
  return instance.inflated ? source.copies.ranges(instance, ranges) : storedRanges(source.store, instance.objectKey, ranges);
}

/** Byte ranges of one object, one after the other; the first is opened before this resolves. */
export async function storedRanges(store: ObjectStore, key: string, ranges: FrameRange): Promise<AsyncIterable<Buffer>> {
  const [[offset, length] = [0, 0], ...rest] = ranges;
  const first = await store.get(key, { offset, length });
  return (async function* () {
    yield* first as AsyncIterable<Buffer>;
    for (const [o, l] of rest) yield* (await store.get(key, { offset: o, length: l })) as AsyncIterable<Buffer>;
  })();
}

/** Chunks of a known total length in one buffer, filled as they stream in rather than joined at the end. */
export async function collect(chunks: AsyncIterable<Buffer>, length: number): Promise<Buffer> {
  const bytes = Buffer.allocUnsafe(length);
  let filled = 0;
  for await (const chunk of chunks) filled += chunk.copy(bytes, filled);
  return bytes.subarray(0, filled);
}
