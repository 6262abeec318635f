import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import type { Logger } from 'pino';
import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import type { DerivedCache } from '../storage/derived-cache.js';
import { inflatedKey } from '../storage/keys.js';
import { ObjectNotFound, type ObjectStore } from '../storage/object-store.js';
import { storedRanges, type ReadLimits } from './data-set-ranges.js';
import { dataSetStart, inflatedRanges } from './deflated.js';

/** The copy would pass what it may take: the cache's whole budget, or PACS_MAX_INSTANCE_BYTES. */
class CopyTooLarge extends Error {}

/**
 * Inflated copies of deflated instances (DESIGN decision 15), so that only the first read of one inflates it: the
 * bytes before its data set as stored, then the data set inflated, which is what the frame and bulk data ranges
 * recorded at ingest refer to, so later reads are ranged reads of the copy. Made once per instance however many
 * requests ask at once; inflated by zlib on its thread pool into a file, never past `maxInflatedBytes` nor the cache's
 * budget; kept in the derived cache with the instance's renderings, and removed with them.
 */
export class InflatedCopies {
  private readonly making = new Map<string, Promise<boolean>>();
  /** Copies found larger than the cache may hold: read by inflating as they stream, and not tried again. */
  private readonly tooLarge = new Set<string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly cache: DerivedCache,
    /** A folder on the object store's disk for copies being made (the process's spool folder). */
    private readonly tmpDir: string,
    private readonly limits: ReadLimits,
    private readonly log: Logger,
  ) {}

  /**
   * Byte ranges of a deflated instance's data set as inflated, from its inflated copy (made first if need be); from
   * the stored file, inflated as it streams, when no copy can be kept. The first range is opened before this resolves.
   */
  async ranges(instance: StoredInstance, ranges: FrameRange): Promise<AsyncIterable<Buffer>> {
    const copy = await this.keyOf(instance);
    if (copy) {
      try {
        return await storedRanges(this.store, copy, ranges);
      } catch (e) {
        if (!(e instanceof ObjectNotFound)) throw e;
        // Evicted by another replica: made again at the next read.
        this.cache.lost(copy);
      }
    }
    return inflatedRanges(this.store, instance, ranges, this.limits);
  }

  /** The key of the instance's inflated copy once it is in the cache (made now if need be); undefined when it cannot be kept. */
  private async keyOf(instance: StoredInstance): Promise<string | undefined> {
    const key = inflatedKey(instance);
    if (this.tooLarge.has(key)) return undefined;
    if (await this.cache.touch(key)) return key;
    let making = this.making.get(key);
    if (!making) {
      making = this.make(instance, key).finally(() => this.making.delete(key));
      this.making.set(key, making);
    }
    return (await making) ? key : undefined;
  }

  private async make(instance: StoredInstance, key: string): Promise<boolean> {
    const file = path.join(this.tmpDir, `${randomUUID()}.inflated`);
    const bound = Math.min(this.limits.maxInflatedBytes, this.cache.budget);
    try {
      const start = await dataSetStart(this.store, instance);
      const before = await buffer(await this.store.get(instance.objectKey, { offset: 0, length: start }));
      const deflated = await this.store.get(instance.objectKey, { offset: start, length: instance.size - start });
      const sha256 = createHash('sha256');
      let size = 0;
      await pipeline(
        deflated,
        createInflateRaw({ chunkSize: 256 * 1024 }),
        async function* (inflated: AsyncIterable<Buffer>) {
          for (const chunks of [[before], inflated]) {
            for await (const chunk of chunks) {
              size += chunk.length;
              if (size > bound) throw new CopyTooLarge();
              sha256.update(chunk);
              yield chunk;
            }
          }
        },
        createWriteStream(file, { mode: 0o600 }),
      );
      if (await this.cache.putFile(key, file, sha256.digest('hex'))) return true;
      this.tooLarge.add(key);
      return false;
    } catch (err) {
      if (err instanceof CopyTooLarge) this.tooLarge.add(key);
      // The read goes on by inflating as it streams, which reports what is wrong with the file, if anything.
      else this.log.warn({ err, objectKey: key }, 'the inflated copy of a deflated instance could not be made');
      return false;
    } finally {
      await fs.rm(file, { force: true });
    }
  }
}
