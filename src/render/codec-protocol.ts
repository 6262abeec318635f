/** Messages between the codec pool and its workers (codec-pool.ts, codec-worker.ts). */

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
};

export type CodecRequest = { id: number; codec: CodecName; bytes: Uint8Array; hints: CodecHints };

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
};

/** `unavailable`: the codec itself could not be loaded (a server fault, not the frame's). */
export type CodecResponse = { id: number; frame: CodecFrame } | { id: number; error: string; unavailable?: boolean };
