import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import dicomParser from 'dicom-parser';
import type { Logger } from 'pino';
import type { StoredInstance } from '../catalog/catalog.js';
import { elementHeader, explicitLittleEndianMeta, rewriteExplicitLittleEndian, textValue, usValue, type Replacement } from '../dicom/explicit-le.js';
import type { DicomJson } from '../dicom/json.js';
import { isEncapsulated, TransferSyntax } from '../dicom/transfer-syntax.js';
import { bulkDataPath } from '../read/bulk-data.js';
import { frameCountOf, storedFrameLength, type FrameBytes } from '../read/frames.js';
import type { ReadService } from '../read/read-service.js';
import { canDecode, decodeFrame, decodingMemory } from '../render/decode.js';
import type { MemoryBudget } from '../render/memory-budget.js';
import { pixelModuleOf } from '../render/pixel-module.js';
import { RenderError, type DecodedFrame, type PixelModule } from '../render/types.js';
import type { DerivedCache } from '../storage/derived-cache.js';
import { explicitLittleEndianKey } from '../storage/keys.js';
import { ObjectNotFound, type ObjectStore } from '../storage/object-store.js';

const EXPLICIT_LE = TransferSyntax.ExplicitVRLittleEndian;
const PIXEL_DATA_TAGS = ['x7fe00010', 'x7fe00008', 'x7fe00009'] as const;

/** An instance on its way out: the syntax it is in, and its bytes. */
export type Sent = { transferSyntaxUid: string; body: AsyncIterable<Uint8Array> };

/**
 * Instances and frames converted to Explicit VR Little Endian, which PS3.18 8.7.3.4 requires every origin server to
 * send of lossless and uncompressed data, and which is the default when a client names no transfer syntax. Frames are
 * decoded by rendering's codecs (in its workers, within its size limit and memory budget); a converted instance is
 * written once to a file and kept in the derived cache with the renderings, so the next retrieve is a plain read.
 * Frames this server cannot decode (MPEG, JPEG XL…) are sent as stored, labelled with their own syntax.
 */
export class Transcoder {
  private readonly making = new Map<string, Promise<string | undefined>>();

  constructor(
    private readonly reads: ReadService,
    private readonly store: ObjectStore,
    private readonly cache: DerivedCache,
    /** A folder on the object store's disk for conversions being written (the process's spool folder). */
    private readonly tmpDir: string,
    private readonly log: Logger,
    private readonly limits: { maxFrameBytes?: number; budget: MemoryBudget },
  ) {}

  /** The syntax an instance goes out in when Explicit VR Little Endian is asked for. */
  syntaxFor(instance: StoredInstance): string {
    return canDecode(instance.transferSyntaxUid) ? EXPLICIT_LE : instance.transferSyntaxUid;
  }

  /**
   * The instance as an Explicit VR Little Endian Part 10 file: as stored when it is one, else its cached conversion
   * (made first when missing). One whose frames do not decode goes as stored, and the log says why.
   */
  async instance(instance: StoredInstance): Promise<Sent> {
    const asStored = { transferSyntaxUid: instance.transferSyntaxUid, body: this.reads.instanceStream(instance) };
    if (this.syntaxFor(instance) !== EXPLICIT_LE || instance.transferSyntaxUid === EXPLICIT_LE) return asStored;
    const key = explicitLittleEndianKey(instance);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.cache.touch(key)) {
        try {
          return { transferSyntaxUid: EXPLICIT_LE, body: await this.store.get(key) };
        } catch (e) {
          if (!(e instanceof ObjectNotFound)) throw e;
          // Evicted by another replica since: made again.
          this.cache.lost(key);
        }
      }
      let making = this.making.get(key);
      if (!making) {
        making = this.convert(instance, key).finally(() => this.making.delete(key));
        this.making.set(key, making);
      }
      let uncached: string | undefined;
      try {
        uncached = await making;
      } catch (err) {
        // A server fault (a codec that died, no memory to wait for) fails the request; a file's own fault does not.
        if (!(err instanceof RenderError) || err.status === 500 || err.status === 503) throw err;
        this.log.warn({ sopUid: instance.sopUid, transferSyntaxUid: instance.transferSyntaxUid, reason: err.message }, 'sent as stored: its frames could not be converted to Explicit VR Little Endian');
        return asStored;
      }
      if (uncached) return { transferSyntaxUid: EXPLICIT_LE, body: streamThenRemove(uncached) };
    }
    return asStored;
  }

  /** Frames (1-based, checked against the instance) decoded to native pixels, little endian, one at a time. */
  async *frames(instance: StoredInstance, numbers: number[]): AsyncGenerator<FrameBytes> {
    const module = await this.pixelModule(instance);
    for (const n of numbers) {
      const pixels = bytesOf(await this.decoded(instance, module, n));
      yield { length: pixels.length, chunks: (async function* () {
        yield pixels;
      })() };
    }
  }

  /**
   * Writes the conversion to a file and moves it into the cache. Resolves with the file's path when it is larger than
   * the cache may hold (the caller streams and removes it), undefined once it is cached. A frame that does not
   * decode is a RenderError the caller answers by sending the instance as stored.
   */
  private async convert(instance: StoredInstance, key: string): Promise<string | undefined> {
    const file = path.join(this.tmpDir, `${randomUUID()}.explicit-le`);
    try {
      const sha256 = createHash('sha256');
      await pipeline(
        this.converted(instance),
        async function* (chunks: AsyncIterable<Buffer>) {
          for await (const chunk of chunks) {
            sha256.update(chunk);
            yield chunk;
          }
        },
        createWriteStream(file, { mode: 0o600 }),
      );
      const { size } = await fs.stat(file);
      if (size > this.cache.budget) return file;
      await this.cache.putFile(key, file, sha256.digest('hex'));
      return undefined;
    } catch (e) {
      await fs.rm(file, { force: true });
      throw e;
    }
  }

  /** Meta information, the data set before the pixel data, then the pixel data: native as it is, or decoded. */
  private async *converted(instance: StoredInstance): AsyncGenerator<Buffer> {
    const head = await this.reads.attributes(instance);
    // A deflated instance's head is inflated already; the parser is told to take it as it is.
    const dataSet = dicomParser.parseDicom(head, { untilTag: 'x7fe00010', inflater: (bytes: Buffer) => bytes } as unknown as dicomParser.ParseDicomOptions);
    const pixelTag = PIXEL_DATA_TAGS.find((t) => dataSet.elements[t]);
    const options = { bigEndian: instance.transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian, pixelRepresentation: dataSet.uint16('x00280103') ?? 0 };
    const tag = pixelTag?.slice(1).toUpperCase();
    const frameCount = frameCountOf(instance);
    if (!tag || frameCount === 0) {
      yield explicitLittleEndianMeta(dataSet);
      yield rewriteExplicitLittleEndian(dataSet, options);
      return;
    }
    const bitsAllocated = dataSet.uint16('x00280100') ?? 16;
    const vr = tag === '7FE00008' ? 'OF' : tag === '7FE00009' ? 'OD' : bitsAllocated <= 8 ? 'OB' : 'OW';
    const all = Array.from({ length: frameCount }, (_, i) => i + 1);

    if (!isEncapsulated(instance.transferSyntaxUid)) {
      const length = all.reduce((sum, n) => sum + storedFrameLength(instance, n), 0);
      yield explicitLittleEndianMeta(dataSet);
      yield rewriteExplicitLittleEndian(dataSet, options);
      yield elementHeader(tag, vr, length + (length % 2));
      // Frames come as Explicit VR Little Endian already (read/frames.ts turns big endian words around).
      for await (const frame of this.reads.frames(instance, all)) yield* frame.chunks;
      if (length % 2) yield Buffer.alloc(1);
      return;
    }

    const module = await this.pixelModule(instance);
    for (const n of all) {
      const decoded = await this.decoded(instance, module, n);
      const pixels = bytesOf(decoded);
      if (n === 1) {
        // The codecs may hand back another colour model or sample layout than the data set names (RGB from YBR JPEG).
        const replace: Replacement[] = [{ tag: '00280004', vr: 'CS', value: textValue(decoded.photometric) }];
        if (module.samplesPerPixel === 3) replace.push({ tag: '00280006', vr: 'US', value: usValue(decoded.planar ? 1 : 0) });
        const length = pixels.length * frameCount;
        yield explicitLittleEndianMeta(dataSet);
        yield rewriteExplicitLittleEndian(dataSet, { ...options, replace });
        yield elementHeader(tag, vr, length + (length % 2));
      }
      yield pixels;
    }
    if ((bytesPerFrame(module) * frameCount) % 2) yield Buffer.alloc(1);
  }

  private pixelModule(instance: StoredInstance): Promise<PixelModule> {
    return pixelModuleOf(JSON.parse(instance.json) as DicomJson, (uri) => this.reads.bulkData(instance, bulkDataPath(uri)));
  }

  /** One frame decoded, once the memory it needs is free (shared with rendering). */
  private async decoded(instance: StoredInstance, module: PixelModule, n: number): Promise<DecodedFrame> {
    const release = await this.limits.budget.acquire(decodingMemory(module, storedFrameLength(instance, n)));
    try {
      const decoded = await decodeFrame(instance.transferSyntaxUid, await this.reads.frame(instance, n), module, { maxFrameBytes: this.limits.maxFrameBytes });
      if (decoded.pixels.byteLength !== bytesPerFrame(module)) throw new RenderError(422, `frame ${n} decoded to ${decoded.pixels.byteLength} bytes, not the ${bytesPerFrame(module)} the data set describes`);
      return decoded;
    } finally {
      release();
    }
  }
}

function bytesPerFrame(module: PixelModule): number {
  return module.rows * module.columns * module.samplesPerPixel * Math.max(1, module.bitsAllocated / 8);
}

function bytesOf(frame: DecodedFrame): Buffer {
  return Buffer.from(frame.pixels.buffer, frame.pixels.byteOffset, frame.pixels.byteLength);
}

async function* streamThenRemove(file: string): AsyncGenerator<Buffer> {
  try {
    yield* createReadStream(file) as AsyncIterable<Buffer>;
  } finally {
    await fs.rm(file, { force: true });
  }
}
