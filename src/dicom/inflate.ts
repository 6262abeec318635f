import { Readable, pipeline } from 'node:stream';
import zlib from 'node:zlib';
import { DicomParseError } from './parse-error.js';

/** zlib hands back this much at a time: fewer trips to its thread pool than its 16 KB default. */
const CHUNK_BYTES = 256 * 1024;

/** The data set inflates past the bound given; inflating stopped there. */
export class InflateLimitExceeded extends Error {
  constructor(readonly limit: number) {
    super(`the deflated data set inflates to more than ${limit} bytes`);
  }
}

/**
 * A Deflated Explicit VR Little Endian data set (PS3.5 A.5) inflated as far as it is asked, by zlib on its thread
 * pool, so the event loop stays free however far a few KB inflate. Every inflated byte is counted and inflating
 * stops as soon as `maxBytes` (with `before`) is passed; only the prefix asked for is held in memory, the rest is counted and dropped.
 */
export class InflatingReader {
  private readonly chunks: AsyncIterator<Buffer>;
  private held: Buffer;
  private more: Buffer[] = [];
  private heldBytes: number;
  /** Inflated bytes so far: the whole inflated size once `ended`. */
  inflatedBytes = 0;
  ended = false;

  /** `before`: the bytes that precede the data set (preamble and file meta information), held as the prefix's start. */
  constructor(
    private readonly before: Buffer,
    deflated: AsyncIterable<Uint8Array>,
    private readonly maxBytes: number,
  ) {
    const inflater = zlib.createInflateRaw({ chunkSize: CHUNK_BYTES });
    // Errors of either end reach the iterator; leaving it early destroys both.
    this.chunks = pipeline(Readable.from(deflated), inflater, () => undefined)[Symbol.asyncIterator]();
    this.held = before;
    this.heldBytes = before.length;
  }

  /** The whole length of what the prefix begins, once known (the data set is inflated to its end). */
  get size(): number | undefined {
    return this.ended ? this.before.length + this.inflatedBytes : undefined;
  }

  /** The first `length` bytes (`before`, then the inflated data set), or all of them when there are fewer. */
  async prefix(length: number): Promise<Buffer> {
    while (this.heldBytes < length && (await this.next(true)));
    if (this.more.length) {
      this.held = Buffer.concat([this.held, ...this.more]);
      this.more = [];
    }
    return this.held.subarray(0, length);
  }

  /** Inflates the rest, counted and dropped; resolves with the whole length (`before` included). */
  async drain(): Promise<number> {
    while (await this.next(false));
    return this.before.length + this.inflatedBytes;
  }

  async close(): Promise<void> {
    await this.chunks.return?.();
  }

  private async next(hold: boolean): Promise<boolean> {
    let result: IteratorResult<Buffer>;
    try {
      result = await this.chunks.next();
    } catch (e) {
      if (!(e as NodeJS.ErrnoException).code?.startsWith('Z_')) throw e;
      throw new DicomParseError(`the deflated data set does not inflate (${(e as Error).message}): the file is cut short or corrupt`);
    }
    if (result.done) {
      this.ended = true;
      return false;
    }
    this.inflatedBytes += result.value.length;
    if (this.before.length + this.inflatedBytes > this.maxBytes) throw new InflateLimitExceeded(this.maxBytes);
    if (hold) {
      this.more.push(result.value);
      this.heldBytes += result.value.length;
    }
    return true;
  }
}
