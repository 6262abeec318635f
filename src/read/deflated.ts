import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import dicomParser from 'dicom-parser';
import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { HttpError, NotFound } from '../errors.js';
import type { ObjectStore } from '../storage/object-store.js';
import type { ReadLimits } from './data-set-ranges.js';

/** Where a deflated file's meta information is looked for: it is a few hundred bytes in practice. */
const META_BYTES = 64 * 1024;
/** A range length that reaches the end of the data set, wherever that is. */
export const TO_THE_END = Number.MAX_SAFE_INTEGER;

/**
 * Ranges of a deflated file's data set (offsets count the preamble and meta information, then the inflated bytes),
 * inflated by zlib on its thread pool as they stream by, and never past `limits.maxInflatedBytes`.
 */
export async function inflatedRanges(store: ObjectStore, instance: StoredInstance, ranges: FrameRange, limits: ReadLimits): Promise<AsyncIterable<Buffer>> {
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
export async function dataSetStart(store: ObjectStore, instance: StoredInstance): Promise<number> {
  const prefix = await buffer(await store.get(instance.objectKey, { offset: 0, length: Math.min(instance.size, META_BYTES) }));
  const meta = dicomParser.readPart10Header(prefix);
  return meta.elements['x00020010'] ? (meta as unknown as { position: number }).position : 132;
}
