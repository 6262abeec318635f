/**
 * What rendering knows about an image, read from the instance's stored DICOM JSON (PS3.3 C.7.6.3 Image Pixel,
 * C.11 VOI LUT, C.11.1 Modality LUT); checked once, before any pixel is touched.
 */
export type PixelModule = {
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  bitsAllocated: 1 | 8 | 16 | 32;
  bitsStored: number;
  highBit: number;
  /** 0 unsigned, 1 two's complement */
  pixelRepresentation: 0 | 1;
  photometric: string;
  /** 0 colour-by-pixel (RGBRGB…), 1 colour-by-plane (RR…GG…BB…) */
  planarConfiguration: 0 | 1;
  numberOfFrames: number;
  rescaleSlope: number;
  rescaleIntercept: number;
  /** The data set's VOI windows, first one first; empty when it names none. */
  windows: Array<{ center: number; width: number }>;
  voiFunction: VoiFunction;
  /** PALETTE COLOR lookup tables, when the photometric interpretation is PALETTE COLOR. */
  palette?: { red: PaletteLut; green: PaletteLut; blue: PaletteLut };
};

export type VoiFunction = 'LINEAR' | 'LINEAR_EXACT' | 'SIGMOID';

export type PaletteLut = { entries: number; firstMapped: number; bits: 8 | 16; data: Uint16Array };

/** A frame's pixels after its transfer syntax is undone: native layout, little endian, one typed array. */
export type DecodedFrame = {
  pixels: Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array;
  rows: number;
  columns: number;
  samplesPerPixel: 1 | 3;
  /** Colour samples by plane after decoding; codecs return interleaved samples whatever the data set said. */
  planar: boolean;
  /** After decoding: a JPEG codec that turns YBR into RGB says RGB here. */
  photometric: string;
};

/** Pixels ready for an image file: 8 bits a sample, grey (1 channel) or RGB (3), rows × columns, interleaved. */
export type DisplayImage = { data: Buffer; width: number; height: number; channels: 1 | 3 };

/** A window asked for by the client (PS3.18 8.3.5.1.4 `window=center,width,function`). */
export type WindowRequest = { center: number; width: number; fn: VoiFunction };

/** An undecodable, unsupported or over-limit frame: the route answers with this status and reason. */
export class RenderError extends Error {
  constructor(
    readonly status: 400 | 406 | 413 | 422 | 500 | 501 | 503,
    message: string,
  ) {
    super(message);
  }
}
