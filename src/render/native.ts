import type { DecodedFrame } from './types.js';

export type Pixels = DecodedFrame['pixels'];

/**
 * Little-endian sample bytes as the typed array their BitsAllocated and PixelRepresentation call for.
 * A view when the bytes are aligned for it, else one copy.
 */
export function samplesOf(bytes: Uint8Array, bitsAllocated: 8 | 16 | 32, signed: boolean, count: number): Pixels {
  const size = bitsAllocated / 8;
  const length = count * size;
  const aligned = bytes.byteOffset % size === 0 ? bytes : new Uint8Array(bytes.subarray(0, length));
  const { buffer, byteOffset } = aligned;
  if (bitsAllocated === 8) return signed ? new Int8Array(buffer, byteOffset, count) : new Uint8Array(buffer, byteOffset, count);
  if (bitsAllocated === 16) return signed ? new Int16Array(buffer, byteOffset, count) : new Uint16Array(buffer, byteOffset, count);
  return signed ? new Int32Array(buffer, byteOffset, count) : new Uint32Array(buffer, byteOffset, count);
}

/** 1-bit pixels (PS3.5 8.1.1: the first pixel in the least significant bit of the first byte), one byte each. */
export function unpackBits1(bytes: Uint8Array, count: number): Uint8Array {
  const out = new Uint8Array(count);
  for (let i = 0; i < count; i++) out[i] = (bytes[i >> 3]! >> (i & 7)) & 1;
  return out;
}

/**
 * Native YBR_FULL_422 (PS3.3 C.7.6.3.1.2): each pair of pixels is stored as Y1 Y2 Cb Cr; returned as full-resolution
 * YBR_FULL, colour by pixel, each pixel of a pair taking the pair's chroma.
 */
export function upsample422(samples: Uint8Array | Uint16Array | Int8Array | Int16Array | Uint32Array | Int32Array, rows: number, columns: number): Pixels {
  const out = new (samples.constructor as new (n: number) => Pixels)(rows * columns * 3);
  const stride = 2 * Math.ceil(columns / 2) * 2;
  for (let row = 0; row < rows; row++) {
    for (let x = 0; x < columns; x++) {
      const pair = row * stride + (x >> 1) * 4;
      const o = (row * columns + x) * 3;
      out[o] = samples[pair + (x & 1)]!;
      out[o + 1] = samples[pair + 2]!;
      out[o + 2] = samples[pair + 3]!;
    }
  }
  return out;
}
