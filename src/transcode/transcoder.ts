import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { StoredInstance } from '../catalog/catalog.js';
import { elementHeader, explicitLittleEndianMeta, rewriteExplicitLittleEndian, textValue, usValue, type Replacement } from '../dicom/explicit-le.js';
import type { DicomJson } from '../dicom/json.js';
import { parseStoredHead, PIXEL_TAGS } from '../dicom/parse.js';
import { isEncapsulated, TransferSyntax } from '../dicom/transfer-syntax.js';
import { HttpError } from '../errors.js';
import { bulkDataPath } from '../read/bulk-data.js';
import { allFrames, storedFrameLength, type FrameBytes } from '../read/frames.js';
import type { ReadService } from '../read/read-service.js';
import { canDecode, decodedFrameBytes, decodeFrame, decodingMemory, keepsColourModel } from '../render/decode.js';
import { MemoryBudget } from '../render/memory-budget.js';
import { pixelModuleOf } from '../render/pixel-module.js';
import { RenderError, type DecodedFrame, type PixelModule } from '../render/types.js';
import type { DerivedCache } from '../storage/derived-cache.js';
import { explicitLittleEndianKey } from '../storage/keys.js';
import { ObjectNotFound, type ObjectStore } from '../storage/object-store.js';

const EXPLICIT_LE = TransferSyntax.ExplicitVRLittleEndian;
/** Conversions at once: each holds a codec worker and writes a file to the spool folder, which uploads need too. */
const CONCURRENT_CONVERSIONS = 2;
/** The largest share of the derived cache one converted instance may take, so that renderings keep their place. */
const CACHE_SHARE = 4;

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
  private readonly making = new Map<string, Promise<boolean>>();
  /** Conversions larger than the cache may keep: streamed as they are made, to each request its own. */
  private readonly tooLarge = new Set<string>();
  private readonly running = new MemoryBudget(CONCURRENT_CONVERSIONS);

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
   * True when the instance's frames can be sent decoded as they are described by the metadata a client holds: a
   * decoder exists and gives the colour model the data set names (a YBR JPEG decodes to RGB: its frames are not).
   */
  async decodesFrames(instance: StoredInstance): Promise<boolean> {
    if (!isEncapsulated(instance.transferSyntaxUid)) return true;
    if (!canDecode(instance.transferSyntaxUid)) return false;
    try {
      return keepsColourModel(instance.transferSyntaxUid, await this.pixelModule(instance));
    } catch (err) {
      if (err instanceof RenderError && err.status === 422) return false;
      throw err;
    }
  }

  /**
   * The instance as an Explicit VR Little Endian Part 10 file: as stored when it is one, else its cached conversion
   * (made first when missing). One that cannot be converted for a reason of its own (frames that do not decode, a
   * header too large to read whole) goes as stored, and the log says why.
   */
  async instance(instance: StoredInstance): Promise<Sent> {
    const asStored = { transferSyntaxUid: instance.transferSyntaxUid, body: this.reads.instanceStream(instance) };
    if (this.syntaxFor(instance) !== EXPLICIT_LE || instance.transferSyntaxUid === EXPLICIT_LE) return asStored;
    const key = explicitLittleEndianKey(instance);
    try {
      if (this.tooLarge.has(key)) return { transferSyntaxUid: EXPLICIT_LE, body: await this.streamed(instance) };
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
        if (!(await making)) return { transferSyntaxUid: EXPLICIT_LE, body: await this.streamed(instance) };
      }
    } catch (err) {
      if (!isTheFilesFault(err)) throw err;
      this.log.warn({ sopUid: instance.sopUid, transferSyntaxUid: instance.transferSyntaxUid, reason: (err as Error).message }, 'sent as stored: it could not be converted to Explicit VR Little Endian');
    }
    return asStored;
  }

  /**
   * Frames (1-based, checked against the instance) decoded to native pixels, little endian, one at a time, laid out
   * as the data set's PlanarConfiguration says (codecs give colour by pixel, or by plane, whatever it says).
   */
  async *frames(instance: StoredInstance, numbers: number[]): AsyncGenerator<FrameBytes> {
    const module = await this.pixelModule(instance);
    for (const n of numbers) {
      const pixels = bytesOf(await this.decoded(instance, module, n), module.samplesPerPixel === 3 ? module.planarConfiguration === 1 : undefined);
      yield { length: pixels.length, chunks: (async function* () {
        yield pixels;
      })() };
    }
  }

  /**
   * Writes the conversion to a file and moves it into the cache: true once cached, false (and remembered) when it
   * is larger than the cache may keep. A frame that does not decode is a RenderError the caller answers by sending
   * the instance as stored.
   */
  private async convert(instance: StoredInstance, key: string): Promise<boolean> {
    const file = path.join(this.tmpDir, `${randomUUID()}.explicit-le`);
    const release = await this.running.acquire(1);
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
        createWriteStream(file, { flags: 'wx', mode: 0o600 }),
      );
      // Synced before it is moved in: a crash must not leave a cut-short copy to be served as whole.
      const written = await fs.open(file, 'r');
      try {
        await written.sync();
      } finally {
        await written.close();
      }
      const { size } = await fs.stat(file);
      if (size > this.cache.budget / CACHE_SHARE) {
        this.tooLarge.add(key);
        return false;
      }
      await this.cache.putFile(key, file, sha256.digest('hex'));
      return true;
    } finally {
      release();
      await fs.rm(file, { force: true });
    }
  }

  /** A conversion streamed as it is made, not kept; its first bytes are made before this resolves. */
  private async streamed(instance: StoredInstance): Promise<AsyncIterable<Buffer>> {
    const chunks = this.converted(instance);
    const first = await chunks.next();
    return (async function* () {
      if (first.done) return;
      yield first.value;
      yield* chunks;
    })();
  }

  /** Meta information, the data set before the pixel data, then the pixel data: native as it is, or decoded. */
  private async *converted(instance: StoredInstance): AsyncGenerator<Buffer> {
    const dataSet = parseStoredHead(await this.reads.attributes(instance));
    const pixelTag = PIXEL_TAGS.find((t) => dataSet.elements[t])?.slice(1).toUpperCase();
    const options = { bigEndian: instance.transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian, pixelRepresentation: dataSet.uint16('x00280103') ?? 0 };
    const frames = allFrames(instance);
    if (!pixelTag || frames.length === 0) {
      yield explicitLittleEndianMeta(dataSet);
      yield rewriteExplicitLittleEndian(dataSet, options);
      return;
    }
    const bitsAllocated = dataSet.uint16('x00280100') ?? 16;
    const vr = pixelTag === '7FE00008' ? 'OF' : pixelTag === '7FE00009' ? 'OD' : bitsAllocated <= 8 ? 'OB' : 'OW';

    if (!isEncapsulated(instance.transferSyntaxUid)) {
      const length = frames.reduce((sum, n) => sum + storedFrameLength(instance, n), 0);
      yield explicitLittleEndianMeta(dataSet);
      yield rewriteExplicitLittleEndian(dataSet, options);
      yield elementHeader(pixelTag, vr, length + (length % 2));
      // Frames come as Explicit VR Little Endian already (read/frames.ts turns big endian words around).
      for await (const frame of this.reads.frames(instance, frames)) yield* frame.chunks;
      if (length % 2) yield Buffer.alloc(1);
      return;
    }

    const module = await this.pixelModule(instance);
    const length = decodedFrameBytes(module) * frames.length;
    for (const n of frames) {
      const decoded = await this.decoded(instance, module, n);
      if (n === 1) {
        // The codecs may hand back another colour model or sample layout than the data set names (RGB from YBR JPEG).
        const replace: Replacement[] = [{ tag: '00280004', vr: 'CS', value: textValue(decoded.photometric) }];
        if (module.samplesPerPixel === 3) replace.push({ tag: '00280006', vr: 'US', value: usValue(decoded.planar ? 1 : 0) });
        yield explicitLittleEndianMeta(dataSet);
        yield rewriteExplicitLittleEndian(dataSet, { ...options, replace });
        yield elementHeader(pixelTag, vr, length + (length % 2));
      }
      yield bytesOf(decoded);
    }
    if (length % 2) yield Buffer.alloc(1);
  }

  private pixelModule(instance: StoredInstance): Promise<PixelModule> {
    return pixelModuleOf(JSON.parse(instance.json) as DicomJson, (uri) => this.reads.bulkData(instance, bulkDataPath(uri)));
  }

  /** One frame decoded, once the memory it needs is free (shared with rendering). */
  private async decoded(instance: StoredInstance, module: PixelModule, n: number): Promise<DecodedFrame> {
    const release = await this.limits.budget.acquire(decodingMemory(module, storedFrameLength(instance, n)));
    try {
      const decoded = await decodeFrame(instance.transferSyntaxUid, await this.reads.frame(instance, n), module, { maxFrameBytes: this.limits.maxFrameBytes });
      if (decoded.pixels.byteLength !== decodedFrameBytes(module)) throw new RenderError(422, `frame ${n} decoded to ${decoded.pixels.byteLength} bytes, not the ${decodedFrameBytes(module)} the data set describes`);
      return decoded;
    } finally {
      release();
    }
  }
}

/** A refusal for a reason of the file's (it does not decode, its header is too large to read whole), not a fault of the server's. */
function isTheFilesFault(err: unknown): boolean {
  if (err instanceof RenderError) return err.status !== 500 && err.status !== 503;
  return err instanceof HttpError && (err.status === 413 || err.status === 422);
}

/** A decoded frame's bytes; colour samples laid out by plane or by pixel when `planar` says which. */
function bytesOf(frame: DecodedFrame, planar?: boolean): Buffer {
  const bytes = Buffer.from(frame.pixels.buffer, frame.pixels.byteOffset, frame.pixels.byteLength);
  if (planar === undefined || planar === frame.planar) return bytes;
  const size = frame.pixels.BYTES_PER_ELEMENT;
  const pixels = frame.rows * frame.columns;
  const out = Buffer.allocUnsafe(bytes.length);
  for (let p = 0; p < pixels; p++) {
    for (let s = 0; s < 3; s++) {
      const [byPixel, byPlane] = [(p * 3 + s) * size, (s * pixels + p) * size];
      const [from, to] = planar ? [byPixel, byPlane] : [byPlane, byPixel];
      bytes.copy(out, to, from, from + size);
    }
  }
  return out;
}
