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

/** Bytes a native frame occupies (1-bit frames are packed). */
export function nativeFrameBytes(o: { rows: number; columns: number; samplesPerPixel: number; bitsAllocated: number }): number {
  return Math.ceil((o.rows * o.columns * o.samplesPerPixel * o.bitsAllocated) / 8);
}
