import { RenderError, type DecodedFrame, type DisplayImage, type PixelModule, type VoiFunction, type WindowRequest } from './types.js';

type Window = { center: number; width: number; fn: VoiFunction };
type Samples = Uint8Array | Uint16Array | Uint32Array;

/**
 * A decoded frame as 8-bit grey or RGB, the way a viewer would first show it: greyscale through the modality
 * LUT (rescale) and a VOI window (the one asked for, else the data set's first, else the frame's min/max),
 * MONOCHROME1 inverted; colour converted to RGB; PALETTE COLOR through its lookup tables.
 */
export function toDisplay(frame: DecodedFrame, module: PixelModule, window?: WindowRequest): DisplayImage {
  if (frame.rows !== module.rows || frame.columns !== module.columns) {
    throw new RenderError(422, `the decoded frame is ${frame.columns}×${frame.rows} but Columns×Rows say ${module.columns}×${module.rows}`);
  }
  if (window) checkWindow(window);
  if (module.photometric === 'PALETTE COLOR') return palette(frame, module);
  if (module.samplesPerPixel === 1) return greyscale(frame, module, window);
  return colour(frame, module);
}

function checkWindow(w: WindowRequest): void {
  if (!Number.isFinite(w.center) || !Number.isFinite(w.width)) throw new RenderError(400, 'the window center and width must be numbers');
  // PS3.3 C.11.2.1.2.1 (LINEAR needs width ≥ 1), C.11.2.1.3 (LINEAR_EXACT and SIGMOID need width > 0)
  if (w.fn === 'LINEAR' ? w.width < 1 : w.width <= 0) {
    throw new RenderError(400, `a ${w.fn} window needs a width ${w.fn === 'LINEAR' ? 'of at least 1' : 'above 0'}, not ${w.width}`);
  }
}

/** The same memory read as unsigned samples, so masking and table lookups see the stored bit patterns. */
function unsignedView(pixels: DecodedFrame['pixels']): Samples {
  const { buffer, byteOffset, length } = pixels;
  switch (pixels.BYTES_PER_ELEMENT) {
    case 1:
      return pixels instanceof Uint8Array ? pixels : new Uint8Array(buffer, byteOffset, length);
    case 2:
      return pixels instanceof Uint16Array ? pixels : new Uint16Array(buffer, byteOffset, length);
    default:
      return pixels instanceof Uint32Array ? pixels : new Uint32Array(buffer, byteOffset, length);
  }
}

function tooFew(have: number, need: number, what: string): never {
  throw new RenderError(422, `the decoded frame holds ${have} samples but ${what} needs ${need}`);
}

/**
 * Where the stored value sits in a pixel cell (PS3.5 8.1.1): `bitsStored` bits ending at `highBit`.
 * Values are taken as `(sample >>> shift) & mask`, then sign-extended for PixelRepresentation 1.
 */
function cell(module: PixelModule) {
  const bits = module.bitsStored;
  return {
    shift: module.highBit + 1 - bits,
    mask: bits >= 32 ? 0xffffffff : 2 ** bits - 1,
    range: 2 ** bits,
    signed: module.pixelRepresentation === 1,
  };
}

// ---------------------------------------------------------------- greyscale

function greyscale(frame: DecodedFrame, module: PixelModule, request?: WindowRequest): DisplayImage {
  const n = module.rows * module.columns;
  let samples = unsignedView(frame.pixels);
  if (module.bitsAllocated === 1 && samples.length < n) samples = unpackBits(samples, n);
  if (samples.length < n) tooFew(samples.length, n, `${module.columns}×${module.rows}`);
  const { shift, mask, range, signed } = cell(module);
  const slope = module.rescaleSlope;
  const intercept = module.rescaleIntercept;
  const invert = (frame.photometric || module.photometric) === 'MONOCHROME1';

  const chosen: Window =
    request ??
    (module.windows[0] ? { ...module.windows[0], fn: module.voiFunction } : minMaxWindow(samples, n, module));
  const voi = voiFunction(chosen);
  const out = Buffer.allocUnsafe(n);

  if (module.bitsStored <= 16) {
    // One table over every stored value: rescale, window and polarity once per value, not once per pixel.
    const lut = new Uint8Array(range);
    const half = range / 2;
    for (let v = 0; v < range; v++) {
      const stored = signed && v >= half ? v - range : v;
      const y = voi(stored * slope + intercept);
      lut[v] = invert ? 255 - y : y;
    }
    lookUp(samples, n, shift, mask, lut, out);
  } else {
    const back = 32 - module.bitsStored;
    for (let i = 0; i < n; i++) {
      const raw = (samples[i]! >>> shift) & mask;
      const stored = signed ? (raw << back) >> back : raw >>> 0;
      const y = voi(stored * slope + intercept);
      out[i] = invert ? 255 - y : y;
    }
  }
  return { data: out, width: module.columns, height: module.rows, channels: 1 };
}

function lookUp(samples: Samples, n: number, shift: number, mask: number, lut: Uint8Array, out: Buffer): void {
  if (shift === 0) {
    for (let i = 0; i < n; i++) out[i] = lut[samples[i]! & mask]!;
  } else {
    for (let i = 0; i < n; i++) out[i] = lut[(samples[i]! >>> shift) & mask]!;
  }
}

/** 1-bit pixel cells, first pixel in the least significant bit (PS3.5 8.1.1, D.2). */
function unpackBits(packed: Samples, n: number): Uint8Array {
  const bytes = packed instanceof Uint8Array ? packed : new Uint8Array(packed.buffer, packed.byteOffset, packed.byteLength);
  if (bytes.length * 8 < n) tooFew(bytes.length * 8, n, '1-bit pixels');
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (bytes[i >> 3]! >> (i & 7)) & 1;
  return out;
}

/**
 * A window from the frame's smallest and largest values after rescale, chosen as dcmtk's min-max window does
 * so that the smallest value maps to black and the largest to white: center (min + max + 1) / 2, width max − min + 1.
 */
function minMaxWindow(samples: Samples, n: number, module: PixelModule): Window {
  const { shift, mask, signed } = cell(module);
  const back = 32 - module.bitsStored;
  let lo = Infinity;
  let hi = -Infinity;
  if (!signed && module.bitsStored < 32) {
    for (let i = 0; i < n; i++) {
      const v = (samples[i]! >>> shift) & mask;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  } else {
    for (let i = 0; i < n; i++) {
      const raw = (samples[i]! >>> shift) & mask;
      const v = signed ? (raw << back) >> back : raw >>> 0;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  let min = lo * module.rescaleSlope + module.rescaleIntercept;
  let max = hi * module.rescaleSlope + module.rescaleIntercept;
  if (min > max) [min, max] = [max, min];
  return { center: (min + max + 1) / 2, width: max - min + 1, fn: 'LINEAR' };
}

/** Modality value → 0..255, rounded (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.2 LINEAR_EXACT, C.11.2.1.3.1 SIGMOID). */
function voiFunction({ center: c, width: w, fn }: Window): (x: number) => number {
  switch (fn) {
    case 'LINEAR': {
      const low = c - 0.5 - (w - 1) / 2;
      const high = c - 0.5 + (w - 1) / 2;
      return (x) => (x <= low ? 0 : x > high ? 255 : Math.round(((x - (c - 0.5)) / (w - 1) + 0.5) * 255));
    }
    case 'LINEAR_EXACT': {
      const low = c - w / 2;
      const high = c + w / 2;
      return (x) => (x <= low ? 0 : x > high ? 255 : Math.round(((x - c) / w + 0.5) * 255));
    }
    case 'SIGMOID':
      return (x) => Math.round(255 / (1 + Math.exp((-4 * (x - c)) / w)));
  }
}

// ---------------------------------------------------------------- palette

function palette(frame: DecodedFrame, module: PixelModule): DisplayImage {
  const luts = module.palette;
  if (!luts) throw new RenderError(422, 'PALETTE COLOR without its lookup tables');
  const n = module.rows * module.columns;
  const samples = unsignedView(frame.pixels);
  if (samples.length < n) tooFew(samples.length, n, `${module.columns}×${module.rows}`);
  const { shift, mask, range, signed } = cell(module);
  // One RGB triple per stored value; values outside the table take its first or last entry (C.7.6.3.1.5).
  const table = new Uint8Array(range * 3);
  const half = range / 2;
  const channels = [luts.red, luts.green, luts.blue];
  for (let c = 0; c < 3; c++) {
    const lut = channels[c]!;
    const down = lut.bits === 16 ? 8 : 0;
    for (let v = 0; v < range; v++) {
      const stored = signed && v >= half ? v - range : v;
      const index = Math.min(Math.max(stored - lut.firstMapped, 0), lut.entries - 1);
      table[v * 3 + c] = lut.data[index]! >> down;
    }
  }
  const out = Buffer.allocUnsafe(n * 3);
  for (let i = 0, o = 0; i < n; i++, o += 3) {
    const t = ((samples[i]! >>> shift) & mask) * 3;
    out[o] = table[t]!;
    out[o + 1] = table[t + 1]!;
    out[o + 2] = table[t + 2]!;
  }
  return { data: out, width: module.columns, height: module.rows, channels: 3 };
}

// ---------------------------------------------------------------- colour

/**
 * Y, Cb, Cr → R, G, B as sums of per-value terms, tabulated once over the sample range:
 * R = y[Y] + rCr[Cr], G = y[Y] + gCb[Cb] + gCr[Cr], B = y[Y] + bCb[Cb].
 */
type Matrix = { y: Float64Array; rCr: Float64Array; gCb: Float64Array; gCr: Float64Array; bCb: Float64Array };

function matrix(levels: number, coefficients: { y: (v: number) => number; rCr: number; gCb: number; gCr: number; bCb: number }): Matrix {
  const mid = levels / 2;
  const m: Matrix = { y: new Float64Array(levels), rCr: new Float64Array(levels), gCb: new Float64Array(levels), gCr: new Float64Array(levels), bCb: new Float64Array(levels) };
  for (let v = 0; v < levels; v++) {
    m.y[v] = coefficients.y(v);
    m.rCr[v] = coefficients.rCr * (v - mid);
    m.gCb[v] = -coefficients.gCb * (v - mid);
    m.gCr[v] = -coefficients.gCr * (v - mid);
    m.bCb[v] = coefficients.bCb * (v - mid);
  }
  return m;
}

/** The conversion for a colour model (PS3.3 C.7.6.3.1.2); undefined for RGB, 'RCT' for the reversible transform. */
function conversion(photometric: string, levels: number): Matrix | 'RCT' | undefined {
  switch (photometric) {
    case 'RGB':
      return undefined;
    case 'YBR_FULL':
    case 'YBR_FULL_422':
    case 'YBR_ICT': // the irreversible colour transform is the YBR_FULL matrix (ISO 15444-1 G.3)
      return matrix(levels, { y: (v) => v, rCr: 1.402, gCb: 0.344136, gCr: 0.714136, bCb: 1.772 });
    case 'YBR_PARTIAL_422':
    case 'YBR_PARTIAL_420': {
      // Inverse of the PS3.3 C.7.6.3.1.2 YBR_PARTIAL equations (Y from 16, chroma ±112 around the middle), at the sample depth.
      const black = (16 * levels) / 256;
      return matrix(levels, { y: (v) => 1.164383 * (v - black), rCr: 1.596027, gCb: 0.391762, gCr: 0.812968, bCb: 2.017232 });
    }
    case 'YBR_RCT': // a codec that left the reversible transform in place (ISO 15444-1 G.2)
      return 'RCT';
    default:
      throw new RenderError(501, `colour model ${photometric} is not rendered`);
  }
}

function colour(frame: DecodedFrame, module: PixelModule): DisplayImage {
  if (module.bitsAllocated !== 8 && module.bitsAllocated !== 16) {
    throw new RenderError(501, `colour with ${module.bitsAllocated} bits allocated is not rendered`);
  }
  const n = module.rows * module.columns;
  const samples = unsignedView(frame.pixels);
  const photometric = frame.photometric || module.photometric;
  const { shift, mask } = cell(module);
  const bits = module.bitsStored;
  const max = 2 ** bits - 1;
  const convert = conversion(photometric, max + 1);
  // Down to 8 bits as dcmtk does it (drop the low bits); fewer than 8 bits are stretched to 0..255.
  const to8 = new Uint8Array(max + 1);
  for (let v = 0; v <= max; v++) to8[v] = bits >= 8 ? v >> (bits - 8) : Math.round((v * 255) / max);
  const out = Buffer.allocUnsafe(n * 3);
  const image: DisplayImage = { data: out, width: module.columns, height: module.rows, channels: 3 };

  // Native YBR_*_422: Y1 Y2 Cb Cr for each pair of pixels, chroma sited on the first (PS3.3 C.7.6.3.1.2).
  const subsampled = photometric.endsWith('_422') && samples.length < n * 3;
  const need = subsampled ? Math.ceil(n / 2) * 4 : n * 3;
  if (samples.length < need) tooFew(samples.length, need, `${photometric} ${module.columns}×${module.rows}`);

  if (!convert && bits === 8 && shift === 0 && samples instanceof Uint8Array && !frame.planar) {
    out.set(samples.subarray(0, n * 3));
    return image;
  }
  // Sample k of pixel i sits at i·stride + k·step: interleaved (stride 3, step 1) or by plane (stride 1, step n).
  const stride = frame.planar ? 1 : 3;
  const step = frame.planar ? n : 1;

  if (!convert) {
    for (let i = 0, o = 0, p = 0; i < n; i++, o += 3, p += stride) {
      out[o] = to8[(samples[p]! >>> shift) & mask]!;
      out[o + 1] = to8[(samples[p + step]! >>> shift) & mask]!;
      out[o + 2] = to8[(samples[p + 2 * step]! >>> shift) & mask]!;
    }
    return image;
  }
  if (convert === 'RCT') {
    const mid = (max + 1) / 2;
    const clamp = (v: number) => to8[v <= 0 ? 0 : v >= max ? max : v]!;
    for (let i = 0, o = 0, p = 0; i < n; i++, o += 3, p += stride) {
      const cb = ((samples[p + step]! >>> shift) & mask) - mid;
      const cr = ((samples[p + 2 * step]! >>> shift) & mask) - mid;
      const g = ((samples[p]! >>> shift) & mask) - Math.floor((cb + cr) / 4);
      out[o] = clamp(cr + g);
      out[o + 1] = clamp(g);
      out[o + 2] = clamp(cb + g);
    }
    return image;
  }
  const { y: yT, rCr, gCb, gCr, bCb } = convert;
  const top = max + 0.5;
  // Inline rounding and clamping: this loop runs once per pixel of every colour frame.
  for (let i = 0, o = 0, p = 0; i < n; i++, o += 3, p += stride) {
    let y: number, cb: number, cr: number;
    if (subsampled) {
      const base = (i >> 1) * 4;
      y = yT[(samples[base + (i & 1)]! >>> shift) & mask]!;
      cb = (samples[base + 2]! >>> shift) & mask;
      cr = (samples[base + 3]! >>> shift) & mask;
    } else {
      y = yT[(samples[p]! >>> shift) & mask]!;
      cb = (samples[p + step]! >>> shift) & mask;
      cr = (samples[p + 2 * step]! >>> shift) & mask;
    }
    const r = y + rCr[cr]! + 0.5;
    const g = y + gCb[cb]! + gCr[cr]! + 0.5;
    const b = y + bCb[cb]! + 0.5;
    out[o] = to8[r <= 0 ? 0 : r >= top ? max : r | 0]!;
    out[o + 1] = to8[g <= 0 ? 0 : g >= top ? max : g | 0]!;
    out[o + 2] = to8[b <= 0 ? 0 : b >= top ? max : b | 0]!;
  }
  return image;
}
