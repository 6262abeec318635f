import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { StoredInstance } from '../catalog/catalog.js';
import type { DicomJson } from '../dicom/json.js';
import { frameTransferSyntax } from '../dicom/transfer-syntax.js';
import { bulkDataPath } from '../read/bulk-data.js';
import { storedFrameLength } from '../read/frames.js';
import type { ReadService } from '../read/read-service.js';
import type { DerivedCache } from '../storage/derived-cache.js';
import { renderedKey } from '../storage/keys.js';
import { codecPool } from './codec-pool.js';
import { closeCodecPool, decodeFrame, decodesReduced, decodingMemory } from './decode.js';
import { DEFAULT_QUALITY, encodeImage } from './encode.js';
import { MemoryBudget } from './memory-budget.js';
import { pixelModuleOf } from './pixel-module.js';
import { RenderError, type PixelModule, type WindowRequest } from './types.js';

export type ImageFormat = 'jpeg' | 'png' | 'webp';

export const MEDIA_TYPES: Record<ImageFormat, string> = { jpeg: 'image/jpeg', png: 'image/png', webp: 'image/webp' };
const EXTENSIONS = { jpeg: 'jpg', png: 'png', webp: 'webp' } as const;

/**
 * The part of the image to show and the box to fit it in (PS3.18 8.3.5.1.3 `viewport=vw,vh[,sx,sy,sw,sh]`).
 * The region is in source pixels; a negative width or height mirrors the image along that axis.
 */
export type Viewport = { width: number; height: number; region?: { x: number; y: number; width: number; height: number } };

/** What a client may ask of a rendering; absent means the server's choice. */
export type RenderOptions = {
  format: ImageFormat;
  /** 1-100, for the lossy formats. */
  quality?: number;
  /** Fitted inside, aspect ratio kept, never enlarged (encode.ts); absent keeps the image's own size. */
  viewport?: Viewport;
  /** absent: the data set's first window, or one computed from the pixels. */
  window?: WindowRequest;
};

/** What rendering reads of a stored instance: a frame in a buffer of its own, and bulk data (LUTs, overlays). */
export type InstanceReader = Pick<ReadService, 'frame' | 'bulkData'>;

/** One rendering, named before it exists: where it is cached and the ETag it answers with. */
export type Rendition = { key: string; etag: string; mediaType: string };

/** PACS_RENDER_MEMORY_BYTES's default, for callers without a configuration. */
export const DEFAULT_RENDER_MEMORY_BYTES = 512 * 1024 ** 2;
/** Resolution levels a rendering may leave out: 1/256 of each side. */
const MAX_REDUCE = 8;

/** Bumped when the pipeline changes what it draws, so that images cached by an older version are not served. */
const PIPELINE_VERSION = 2;

/**
 * Rendered images and thumbnails (DESIGN: derived/ cache, else frame → decode → display → encode → cache).
 * The cache is the object store, so every replica shares it, held to a size budget (storage/derived-cache.ts);
 * a key names the instance's bytes by checksum, the frame and the options, and is therefore never stale.
 */
export class Renderer {
  private readonly inFlight = new Map<string, Promise<Buffer>>();
  private readonly budget: MemoryBudget;

  constructor(
    /** Where renderings are kept, in the object store, within its budget (PACS_DERIVED_CACHE_BYTES). */
    private readonly cache: DerivedCache,
    private readonly read: InstanceReader,
    private readonly log: Logger,
    private readonly limits: { maxFrameBytes?: number; budget?: MemoryBudget } = {},
  ) {
    this.budget = limits.budget ?? new MemoryBudget(DEFAULT_RENDER_MEMORY_BYTES);
  }

  /** The cache key and ETag of a rendering; cheap, so a 304 costs no read at all. */
  identify(instance: StoredInstance, frame: number, options: RenderOptions): Rendition {
    const normal = normalise(options);
    const hash = createHash('sha256').update(JSON.stringify([PIPELINE_VERSION, normal])).digest('hex').slice(0, 16);
    return {
      key: renderedKey(instance, frame, hash, EXTENSIONS[normal.format]),
      etag: `"${instance.sha256.slice(0, 16)}-${frame}-${hash}"`,
      mediaType: MEDIA_TYPES[normal.format],
    };
  }

  /** A frame (1-based, already checked against the instance) as an image file, from the cache when it is there. */
  async render(instance: StoredInstance, frame: number, options: RenderOptions): Promise<{ bytes: Buffer; cached: boolean; rendition: Rendition }> {
    const rendition = this.identify(instance, frame, options);
    const running = this.inFlight.get(rendition.key);
    if (running) return { bytes: await running, cached: false, rendition };
    const cached = await this.cache.get(rendition.key);
    if (cached) return { bytes: cached, cached: true, rendition };
    // Another request may have started it while the cache was read.
    const started = this.inFlight.get(rendition.key);
    if (started) return { bytes: await started, cached: false, rendition };

    const making = this.make(instance, frame, normalise(options));
    this.inFlight.set(rendition.key, making);
    // Held until it is cached too, so that a request arriving meanwhile neither renders again nor misses the cache.
    making
      .then(
        (bytes) => this.cache.put(rendition.key, bytes, rendition.mediaType).catch((err: unknown) => this.log.warn({ err, objectKey: rendition.key }, 'rendered image not cached')),
        () => undefined,
      )
      .finally(() => this.inFlight.delete(rendition.key));
    const bytes = await making;
    this.log.debug({ objectKey: rendition.key, bytes: bytes.length }, 'rendered');
    return { bytes, cached: false, rendition };
  }

  /** Stops the codec workers. */
  async close(): Promise<void> {
    await closeCodecPool();
  }

  /**
   * Frame → pixels → 8-bit image → file, once the memory it needs is free (PACS_RENDER_MEMORY_BYTES). Only as many
   * resolution levels are decoded as the viewport shows; the pixel passes run in a worker and encoding on sharp's
   * threads, so the event loop only moves buffers.
   */
  private async make(instance: StoredInstance, frame: number, options: RenderOptions): Promise<Buffer> {
    const json = JSON.parse(instance.json) as DicomJson;
    const module = await pixelModuleOf(json, (uri) => this.read.bulkData(instance, bulkDataPath(uri)));
    if (frame > module.numberOfFrames) throw new RenderError(400, `frame ${frame} does not exist: the instance has ${module.numberOfFrames} frame(s)`);
    // readFrames gives native pixels as Explicit VR Little Endian, whatever the file's syntax (big endian turned, deflate undone).
    const syntax = frameTransferSyntax(instance.transferSyntaxUid);
    const reduce = decodesReduced(syntax, module) ? levelsToLeaveOut(module, options.viewport) : 0;
    const stored = storedFrameLength(instance, frame);
    const release = await this.budget.acquire(memoryNeeded(module, reduce, stored));
    try {
      const bytes = await this.read.frame(instance, frame);
      const decoded = await decodeFrame(syntax, bytes, module, { maxFrameBytes: this.limits.maxFrameBytes, reduce });
      const shown = { ...module, rows: decoded.rows, columns: decoded.columns };
      const image = await codecPool().display({ frame: decoded, module: shown, window: options.window, region: options.viewport?.region });
      return await encodeImage(image, {
        format: options.format,
        quality: options.quality,
        viewport: options.viewport && { width: options.viewport.width, height: options.viewport.height },
      });
    } finally {
      release();
    }
  }
}

/**
 * Halvings of the image that still leave at least as many pixels as the viewport shows (the encoder scales the
 * rest of the way); none when the viewport cuts out a region, which is given in full-size pixels.
 */
function levelsToLeaveOut(module: PixelModule, viewport?: Viewport): number {
  if (!viewport || viewport.region) return 0;
  const scale = Math.min(viewport.width / module.columns, viewport.height / module.rows);
  return scale >= 1 ? 0 : Math.min(MAX_REDUCE, Math.floor(Math.log2(1 / scale)));
}

/**
 * What one rendering holds at its peak, estimated before anything is read: what decoding holds (decodingMemory), and
 * the 8-bit image twice (made, then cropped or encoded).
 */
function memoryNeeded(module: PixelModule, reduce: number, storedBytes: number): number {
  const factor = 2 ** reduce;
  const pixels = Math.ceil(module.rows / factor) * Math.ceil(module.columns / factor);
  const channels = module.samplesPerPixel === 3 || module.palette ? 3 : 1;
  return decodingMemory(module, storedBytes, reduce) + pixels * channels * 2;
}

/** The same request in one form only, so that equal requests share one cached image. */
function normalise(o: RenderOptions): RenderOptions {
  const lossy = o.format !== 'png';
  const region = o.viewport?.region;
  return {
    format: o.format,
    quality: lossy ? (o.quality ?? DEFAULT_QUALITY) : undefined,
    viewport: o.viewport && { width: o.viewport.width, height: o.viewport.height, region: region && { x: region.x, y: region.y, width: region.width, height: region.height } },
    window: o.window && rounded(o.window),
  };
}

/**
 * A window's centre and width on a grid of a power of two no coarser than width / 256: moving either by half a
 * step moves no output level by more than half a grey level, so requests that differ by less share one image
 * (and one cache entry). Whole numbers stay as they are for widths from 256 up.
 */
function rounded(w: WindowRequest): WindowRequest {
  if (!(w.width > 0) || !Number.isFinite(w.center)) return w;
  const step = 2 ** Math.floor(Math.log2(w.width / 256));
  return { center: Math.round(w.center / step) * step, width: Math.round(w.width / step) * step, fn: w.fn };
}
