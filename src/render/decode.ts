import sharp from 'sharp';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import { codecPool, type CodecPool } from './codec-pool.js';
import type { CodecFrame, CodecName } from './codec-protocol.js';
import { CodestreamError, endsWithEndMarker, j2kHeader, jpegHeader, type CodestreamHeader } from './codestream.js';
import { is422, nativeFrameBytes } from '../dicom/frames.js';
import { samplesOf, unpackBits1, upsample422, type Pixels } from './native.js';
import { decodeRle, RleError } from './rle.js';
import { RenderError, type DecodedFrame, type PixelModule } from './types.js';

export { closeCodecPool } from './codec-pool.js';

/** PACS_RENDER_MAX_FRAME_BYTES's default, for callers without a configuration. */
export const DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;

export type DecodeOptions = {
  /** Largest decoded frame (rows × columns × samples × bytes a sample) accepted; larger ones get 413 before anything is allocated. */
  maxFrameBytes?: number;
  /** The worker pool for compressed frames; the process's shared pool by default. */
  pool?: CodecPool;
  /**
   * Resolution levels that may be left out (each halves both sides), for an image that will be shown smaller:
   * JPEG 2000 and HTJ2K decode only the levels needed, 8-bit JPEG scales its DCT; other frames decode whole.
   * The frame returned says the size it has.
   */
  reduce?: number;
};

const NATIVE = new Set<string>([
  TransferSyntax.ImplicitVRLittleEndian,
  TransferSyntax.ExplicitVRLittleEndian,
  TransferSyntax.DeflatedExplicitVRLittleEndian,
  TransferSyntax.ExplicitVRBigEndian,
]);
const JPEG = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81']);
const J2K = new Set(['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203']);

/** Names for messages (PS3.6 Table A-1). */
const NAMES: Record<string, string> = {
  '1.2.840.10008.1.2.4.50': 'JPEG Baseline',
  '1.2.840.10008.1.2.4.51': 'JPEG Extended',
  '1.2.840.10008.1.2.4.57': 'JPEG Lossless',
  '1.2.840.10008.1.2.4.70': 'JPEG Lossless SV1',
  '1.2.840.10008.1.2.4.80': 'JPEG-LS Lossless',
  '1.2.840.10008.1.2.4.81': 'JPEG-LS Near-Lossless',
  '1.2.840.10008.1.2.4.90': 'JPEG 2000 Lossless',
  '1.2.840.10008.1.2.4.91': 'JPEG 2000',
  '1.2.840.10008.1.2.4.92': 'JPEG 2000 Part 2 Multi-component Lossless',
  '1.2.840.10008.1.2.4.93': 'JPEG 2000 Part 2 Multi-component',
  '1.2.840.10008.1.2.4.100': 'MPEG2 Main Profile',
  '1.2.840.10008.1.2.4.101': 'MPEG2 High Profile',
  '1.2.840.10008.1.2.4.102': 'MPEG-4 AVC/H.264',
  '1.2.840.10008.1.2.4.103': 'MPEG-4 AVC/H.264 BD-compatible',
  '1.2.840.10008.1.2.4.104': 'MPEG-4 AVC/H.264 for 2D Video',
  '1.2.840.10008.1.2.4.105': 'MPEG-4 AVC/H.264 for 3D Video',
  '1.2.840.10008.1.2.4.106': 'MPEG-4 AVC/H.264 Stereo',
  '1.2.840.10008.1.2.4.107': 'HEVC/H.265 Main Profile',
  '1.2.840.10008.1.2.4.108': 'HEVC/H.265 Main 10 Profile',
  '1.2.840.10008.1.2.4.110': 'JPEG XL Lossless',
  '1.2.840.10008.1.2.4.111': 'JPEG XL JPEG Recompression',
  '1.2.840.10008.1.2.4.112': 'JPEG XL',
  '1.2.840.10008.1.2.4.201': 'HTJ2K Lossless',
  '1.2.840.10008.1.2.4.202': 'HTJ2K Lossless RPCL',
  '1.2.840.10008.1.2.4.203': 'HTJ2K',
  '1.2.840.10008.1.2.8.1': 'Deflated Image Frame Compression',
};
const nameOf = (uid: string) => (NAMES[uid] ? `${NAMES[uid]} (${uid})` : uid);

/**
 * One frame's pixels after its transfer syntax is undone (native layout, little endian). `bytes` is the
 * frame as readFrames gives it: native bytes for native syntaxes, the stored codestream otherwise.
 * Compressed frames are decoded in a worker thread and their `bytes` may be transferred there (the
 * caller's buffer is then detached); native and RLE frames are decoded here, which is cheap (a native
 * frame's pixels are a view of `bytes` when its alignment allows). Signed samples with BitsStored
 * below BitsAllocated are returned as the codec or file gives them, sign-extended or not; display
 * masks them to BitsStored.
 * Throws RenderError: 413 over the size limit, 422 for a frame that does not decode or does not match
 * the data set, 501 for a syntax without a decoder, 500/503 when a decoder dies or times out.
 */
export async function decodeFrame(transferSyntaxUid: string, bytes: Uint8Array, module: PixelModule, options: DecodeOptions = {}): Promise<DecodedFrame> {
  const { rows, columns, samplesPerPixel, bitsAllocated } = module;
  if (![rows, columns].every((n) => Number.isInteger(n) && n > 0)) throw new RenderError(422, `the image declares ${rows}×${columns} pixels`);
  if (![1, 8, 16, 32].includes(bitsAllocated) || (samplesPerPixel !== 1 && samplesPerPixel !== 3)) {
    throw new RenderError(422, `the image declares ${samplesPerPixel} sample(s) per pixel of ${bitsAllocated} bits allocated`);
  }
  const frameBytes = decodedFrameBytes(module);
  const limit = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  if (frameBytes > limit) {
    throw new RenderError(413, `a ${columns}×${rows} frame of ${samplesPerPixel} sample(s) at ${bitsAllocated} bits decodes to ${frameBytes} bytes, over this server's limit of ${limit}`);
  }

  if (NATIVE.has(transferSyntaxUid)) return decodeNative(bytes, module);
  if (transferSyntaxUid === TransferSyntax.RLELossless) return decodeRleFrame(bytes, module);
  if (!JPEG.has(transferSyntaxUid) && !J2K.has(transferSyntaxUid)) throw new RenderError(501, `this server has no decoder for ${nameOf(transferSyntaxUid)}`);
  if (bitsAllocated === 1 || bitsAllocated === 32) throw new RenderError(422, `${nameOf(transferSyntaxUid)} frames of ${bitsAllocated}-bit samples are not supported`);
  const header = readHeader(transferSyntaxUid, bytes, module);
  const codec = codecFor(header);
  const stream = header.offset > 0 ? bytes.subarray(header.offset) : bytes;
  const reduce = Math.max(0, Math.floor(options.reduce ?? 0));
  const frame =
    codec === 'libjpeg-turbo' && reduce > 0 && header.height > 0
      ? await shrunkJpeg(stream, module, reduce)
      : await (options.pool ?? codecPool()).decode(codec, stream, {
          rows, columns, samplesPerPixel, bitsAllocated, bitsStored: module.bitsStored, pixelRepresentation: module.pixelRepresentation, photometric: module.photometric,
          reduce: Math.min(reduce, header.decompositions),
        });
  return fromCodec(transferSyntaxUid, codec, frame, module);
}

/** Bytes of one decoded frame: every sample in bytes of its own (1-bit samples take a byte each). */
export function decodedFrameBytes(module: Pick<PixelModule, 'rows' | 'columns' | 'samplesPerPixel' | 'bitsAllocated'>): number {
  return module.rows * module.columns * module.samplesPerPixel * Math.max(1, module.bitsAllocated / 8);
}

/**
 * Whether decoded frames keep the colour model the data set names (photometricAfter, judged by the syntax before the
 * codec is known): native frames of another model would not match the metadata a client holds.
 */
export function keepsColourModel(transferSyntaxUid: string, module: PixelModule): boolean {
  const family: CodecName = transferSyntaxUid === '1.2.840.10008.1.2.4.50' || transferSyntaxUid === '1.2.840.10008.1.2.4.51' ? 'libjpeg-turbo' : J2K.has(transferSyntaxUid) ? 'openjpeg' : 'charls';
  return photometricAfter(family, module) === module.photometric;
}

/**
 * What decoding one frame holds at its peak, estimated before anything is read: the stored frame twice (read, then
 * in the codec), the decoded samples twice (codec heap, then ours) plus a codec's 32-bit working copy.
 */
export function decodingMemory(module: PixelModule, storedBytes: number, reduce = 0): number {
  const factor = 2 ** reduce;
  const samples = Math.ceil(module.rows / factor) * Math.ceil(module.columns / factor) * module.samplesPerPixel;
  return storedBytes * 2 + samples * (Math.max(1, module.bitsAllocated / 8) * 2 + 4);
}

/** True when frames of this syntax have a decoder here (decodeFrame answers 501 for the others). */
export function canDecode(transferSyntaxUid: string): boolean {
  return NATIVE.has(transferSyntaxUid) || transferSyntaxUid === TransferSyntax.RLELossless || JPEG.has(transferSyntaxUid) || J2K.has(transferSyntaxUid);
}

/** True when frames of this syntax can be decoded at a lower resolution (decodeFrame's `reduce`). */
export function decodesReduced(transferSyntaxUid: string, module: PixelModule): boolean {
  if (J2K.has(transferSyntaxUid)) return true;
  // libjpeg-turbo's 8-bit processes; JPEG Extended may hold 12-bit samples, which another codec decodes whole.
  return (transferSyntaxUid === '1.2.840.10008.1.2.4.50' || transferSyntaxUid === '1.2.840.10008.1.2.4.51') && module.bitsStored <= 8;
}

function decodeNative(bytes: Uint8Array, module: PixelModule): DecodedFrame {
  const count = module.rows * module.columns * module.samplesPerPixel;
  const needed = nativeFrameBytes(module);
  if (bytes.length < needed) throw new RenderError(422, `the frame holds ${bytes.length} bytes; ${module.columns}×${module.rows}×${module.samplesPerPixel} at ${module.bitsAllocated} bits (${module.photometric}) needs ${needed}`);
  if (is422(module) && module.bitsAllocated !== 1) {
    const stored = samplesOf(bytes, module.bitsAllocated, module.pixelRepresentation === 1, needed / (module.bitsAllocated / 8));
    return frame(module, upsample422(stored, module.rows, module.columns), false, 'YBR_FULL');
  }
  const pixels = module.bitsAllocated === 1 ? unpackBits1(bytes, count) : samplesOf(bytes, module.bitsAllocated, module.pixelRepresentation === 1, count);
  return frame(module, pixels, module.samplesPerPixel === 3 && module.planarConfiguration === 1, module.photometric);
}

function decodeRleFrame(bytes: Uint8Array, module: PixelModule): DecodedFrame {
  if (module.bitsAllocated === 1) throw new RenderError(422, 'RLE frames of 1-bit samples are not supported');
  const bytesPerSample = module.bitsAllocated / 8;
  try {
    const out = decodeRle(bytes, { rows: module.rows, columns: module.columns, samplesPerPixel: module.samplesPerPixel, bytesPerSample });
    const count = module.rows * module.columns * module.samplesPerPixel;
    return frame(module, samplesOf(out, module.bitsAllocated, module.pixelRepresentation === 1, count), false, module.photometric);
  } catch (e) {
    if (e instanceof RleError) throw new RenderError(422, `the RLE frame does not decode: ${e.message}`);
    throw e;
  }
}

/** The codestream's own header, checked against the data set before a codec sees it. */
function readHeader(transferSyntaxUid: string, bytes: Uint8Array, module: PixelModule): CodestreamHeader {
  const name = nameOf(transferSyntaxUid);
  let header: CodestreamHeader;
  try {
    header = JPEG.has(transferSyntaxUid) ? jpegHeader(bytes) : j2kHeader(bytes);
  } catch (e) {
    if (e instanceof CodestreamError) throw new RenderError(422, `the ${name} frame is not a codestream this server can read: ${e.message}`);
    throw e;
  }
  const says = `${header.width}×${header.height} with ${header.components} component(s)`;
  const expected = `${module.columns}×${module.rows} with ${module.samplesPerPixel}`;
  // JPEG allows a height of 0 in the frame header (defined later by a DNL marker).
  const heightOk = header.height === module.rows || (header.family === 'jpeg' && header.height === 0);
  if (header.width !== module.columns || !heightOk || header.components !== module.samplesPerPixel) {
    throw new RenderError(422, `the ${name} codestream is ${says}, but the data set says ${expected}`);
  }
  if (header.precision > module.bitsAllocated) {
    throw new RenderError(422, `the ${name} codestream holds ${header.precision}-bit samples, more than BitsAllocated ${module.bitsAllocated}`);
  }
  if (!endsWithEndMarker(bytes)) throw new RenderError(422, `the ${name} frame is cut short: its codestream has no end marker`);
  return header;
}

function codecFor(header: CodestreamHeader): CodecName {
  if (header.family === 'j2k') return header.highThroughput ? 'openjph' : 'openjpeg';
  // Chosen by the frame header rather than the UID, so a mislabelled stream still decodes.
  switch (header.frameMarker) {
    case 0xfff7:
      return 'charls';
    case 0xffc3:
      return 'jpeg-lossless';
    case 0xffc0:
    case 0xffc1:
    case 0xffc2:
      return header.precision <= 8 ? 'libjpeg-turbo' : 'jpeg12';
    default:
      throw new RenderError(422, `JPEG frames with start-of-frame marker ${header.frameMarker.toString(16).toUpperCase()} (arithmetic or hierarchical coding) are not supported`);
  }
}

/** The codec's output as the typed array the data set calls for, after checking it is the image the data set describes. */
function fromCodec(transferSyntaxUid: string, codec: CodecName, out: CodecFrame, full: PixelModule): DecodedFrame {
  const name = nameOf(transferSyntaxUid);
  const factor = 2 ** out.reduced;
  const module = { ...full, rows: Math.ceil(full.rows / factor), columns: Math.ceil(full.columns / factor) };
  if (out.width !== module.columns || out.height !== module.rows || out.components !== module.samplesPerPixel) {
    const level = out.reduced > 0 ? ` at 1/${factor} of its size` : '';
    throw new RenderError(422, `the ${name} frame decoded${level} to ${out.width}×${out.height} with ${out.components} component(s), but the data set says ${module.columns}×${module.rows} with ${module.samplesPerPixel}`);
  }
  const count = module.rows * module.columns * module.samplesPerPixel;
  if (out.pixels.length !== count * out.bytesPerSample) {
    throw new RenderError(422, `the ${name} decoder returned ${out.pixels.length} bytes for ${count} samples of ${out.bytesPerSample} byte(s)`);
  }
  const signed = module.pixelRepresentation === 1;
  const bits = module.bitsAllocated as 8 | 16;
  let pixels: Pixels;
  if (out.bytesPerSample * 8 === bits) pixels = samplesOf(out.pixels, bits, signed, count);
  else if (out.bytesPerSample === 1 && bits === 16) {
    // 8-bit samples in a data set that allocates 16 bits a sample
    pixels = signed ? new Int16Array(count) : new Uint16Array(count);
    pixels.set(out.pixels);
  } else {
    throw new RenderError(422, `the ${name} frame holds ${out.bitsPerSample}-bit samples, more than BitsAllocated ${module.bitsAllocated}`);
  }
  return frame(module, pixels, out.planar, photometricAfter(codec, module));
}

/**
 * An 8-bit JPEG decoded at 1/2^reduce of its size by libvips (sharp), whose libjpeg scales the DCT while it
 * decodes (shrink-on-load), on sharp's own threads: a thumbnail of a 16000² JPEG never holds its 256 M pixels.
 * Like libjpeg-turbo, it turns YCbCr into RGB.
 */
async function shrunkJpeg(bytes: Uint8Array, module: PixelModule, reduce: number): Promise<CodecFrame> {
  const factor = 2 ** reduce;
  const width = Math.ceil(module.columns / factor);
  const height = Math.ceil(module.rows / factor);
  try {
    const { data, info } = await sharp(bytes, { limitInputPixels: module.rows * module.columns })
      .resize(width, height, { fit: 'fill' })
      .toColourspace(module.samplesPerPixel === 1 ? 'b-w' : 'srgb')
      .raw()
      .toBuffer({ resolveWithObject: true });
    return { pixels: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height, components: info.channels, bitsPerSample: 8, bytesPerSample: 1, planar: false, reduced: reduce };
  } catch (e) {
    throw new RenderError(422, `the JPEG frame does not decode: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * libjpeg-turbo and the 12-bit JPEG codec turn YCbCr into RGB; JPEG 2000 and HTJ2K undo their
 * reversible/irreversible component transform (YBR_RCT/YBR_ICT), giving RGB. JPEG-LS and lossless
 * JPEG return the samples as coded.
 */
function photometricAfter(codec: CodecName, module: PixelModule): string {
  if (module.samplesPerPixel !== 3) return module.photometric;
  if (codec === 'libjpeg-turbo' || codec === 'jpeg12') return 'RGB';
  if ((codec === 'openjpeg' || codec === 'openjph') && (module.photometric === 'YBR_RCT' || module.photometric === 'YBR_ICT')) return 'RGB';
  return module.photometric;
}

function frame(module: PixelModule, pixels: Pixels, planar: boolean, photometric: string): DecodedFrame {
  return { pixels, rows: module.rows, columns: module.columns, samplesPerPixel: module.samplesPerPixel, planar, photometric };
}
