/**
 * RLE Lossless (PS3.5 Annex G): a 64-byte header of segment offsets, then one PackBits segment per
 * byte plane, most significant byte of each sample first, sample by sample. Returns the frame as
 * little-endian native bytes, colour samples interleaved (PlanarConfiguration 0).
 */
export function decodeRle(frame: Uint8Array, o: { rows: number; columns: number; samplesPerPixel: number; bytesPerSample: number }): Uint8Array {
  if (frame.length < 64) throw new RleError(`the frame is ${frame.length} bytes, shorter than the 64-byte RLE header`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const segments = view.getUint32(0, true);
  const expected = o.samplesPerPixel * o.bytesPerSample;
  if (segments !== expected) {
    throw new RleError(`the RLE header lists ${segments} segments; ${o.samplesPerPixel} sample(s) of ${o.bytesPerSample} byte(s) need ${expected}`);
  }
  const pixels = o.rows * o.columns;
  const out = new Uint8Array(pixels * expected);
  const stride = expected;
  for (let s = 0; s < segments; s++) {
    const start = view.getUint32(4 + 4 * s, true);
    const end = s + 1 < segments ? view.getUint32(8 + 4 * s, true) : frame.length;
    if (start < 64 || end > frame.length || end < start) throw new RleError(`segment ${s + 1} lies outside the frame (bytes ${start}-${end} of ${frame.length})`);
    const sample = Math.floor(s / o.bytesPerSample);
    const significance = s % o.bytesPerSample; // 0 = most significant byte
    const first = sample * o.bytesPerSample + (o.bytesPerSample - 1 - significance);
    const written = unpackBits(frame, start, end, out, first, stride, pixels);
    if (written < pixels) throw new RleError(`segment ${s + 1} holds ${written} of the ${pixels} bytes it should`);
  }
  return out;
}

export class RleError extends Error {}

/** PackBits (PS3.5 G.3.1) into out[first + i * stride] for i < count; returns how many bytes it wrote. */
function unpackBits(src: Uint8Array, start: number, end: number, out: Uint8Array, first: number, stride: number, count: number): number {
  let i = 0;
  let p = start;
  while (p < end && i < count) {
    const n = src[p++]!;
    if (n < 128) {
      // n+1 literal bytes
      const stop = Math.min(p + n + 1, end);
      while (p < stop && i < count) out[first + i++ * stride] = src[p++]!;
    } else if (n > 128) {
      // the next byte, 257-n times
      if (p >= end) break;
      const value = src[p++]!;
      const stop = Math.min(i + 257 - n, count);
      while (i < stop) out[first + i++ * stride] = value;
    } // 128: no operation
  }
  return i;
}
