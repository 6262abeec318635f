/** Messages between the codec pool and its workers (codec-pool.ts, codec-worker.ts). */
import type { DecodedFrame, DisplayImage, PixelModule, WindowRequest } from './types.js';

/**
 * The codecs, by the library that does the work:
 * libjpeg-turbo (8-bit JPEG), dcmjs-codecs (12-bit JPEG), jpeg-lossless (process 14), CharLS (JPEG-LS),
 * OpenJPEG (JPEG 2000), OpenJPH (HTJ2K).
 */
export type CodecName = 'libjpeg-turbo' | 'jpeg12' | 'jpeg-lossless' | 'charls' | 'openjpeg' | 'openjph';

/** What the data set says about the frame; some codecs need it (12-bit JPEG, sample size of JPEG lossless). */
export type CodecHints = {
  rows: number;
  columns: number;
  samplesPerPixel: number;
  bitsAllocated: number;
  bitsStored: number;
  pixelRepresentation: 0 | 1;
  photometric: string;
  /** JPEG 2000 / HTJ2K: resolution levels to leave out (each halves both sides), as far as the codestream has them. */
  reduce?: number;
};

/** A source region of the displayed image to cut out (PS3.18 8.3.5.1.3; negative extents mirror). */
export type Region = { x: number; y: number; width: number; height: number };

/** Decoded pixels to turn into an 8-bit image (display.ts), off the event loop. */
export type DisplayJob = { frame: DecodedFrame; module: PixelModule; window?: WindowRequest; region?: Region };

export type CodecRequest = { id: number; codec: CodecName; bytes: Uint8Array; hints: CodecHints } | { id: number; display: DisplayJob };

/** A codec's output as it gave it: samples of bitsPerSample (1 byte up to 8 bits, else 2), little endian. */
export type CodecFrame = {
  pixels: Uint8Array;
  width: number;
  height: number;
  components: number;
  bitsPerSample: number;
  /** Bytes per sample in pixels. */
  bytesPerSample: number;
  /** True when the codec returned colour samples by plane (JPEG-LS without interleave). */
  planar: boolean;
  /** Resolution levels left out: width and height are the full ones divided by 2^reduced, rounded up. */
  reduced: number;
};

/** `unavailable`: the codec itself could not be loaded (a server fault, not the frame's). */
export type CodecResponse =
  | { id: number; frame: CodecFrame }
  | { id: number; image: DisplayImage }
  | { id: number; error: string; unavailable?: boolean; status?: RenderErrorStatus };

/** A display job's refusal keeps the status display.ts gave it (400 for a bad window, 422, 501). */
export type RenderErrorStatus = 400 | 406 | 413 | 422 | 500 | 501 | 503;
