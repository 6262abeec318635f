import type { StoredInstance } from '../catalog/catalog.js';
import type { FrameRange } from '../dicom/frames.js';
import { Tag } from '../dicom/tags.js';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import { NotFound } from '../errors.js';
import { collect, dataSetRanges, type DataSetSource } from './data-set-ranges.js';

/** One frame as a stream of chunks, and its length. */
export type FrameBytes = { length: number; chunks: AsyncIterable<Buffer> };

/** Frames the instance holds: 0 when it has no pixel data. */
export function frameCountOf(instance: StoredInstance): number {
  return (JSON.parse(instance.frames) as FrameRange[]).length;
}

/** The numbers of all of an instance's frames, from 1. */
export function allFrames(instance: StoredInstance): number[] {
  return Array.from({ length: frameCountOf(instance) }, (_, i) => i + 1);
}

/** The stored bytes of one frame (1-based), 0 when the instance has no such frame. */
export function storedFrameLength(instance: StoredInstance, n: number): number {
  return ((JSON.parse(instance.frames) as FrameRange[])[n - 1] ?? []).reduce((sum, [, length]) => sum + length, 0);
}

/**
 * Frames as stored: ranged reads of their byte ranges streamed in chunks, no parsing (DESIGN decisions 3 and 6),
 * so a frame of hundreds of MB costs a few chunks of memory. Each frame's object is opened before the frame is
 * yielded: a missing object fails before its first byte goes out.
 */
export async function* readFrames(source: DataSetSource, instance: StoredInstance, numbers: number[]): AsyncGenerator<FrameBytes> {
  const ranges = JSON.parse(instance.frames) as FrameRange[];
  const swap16 = turnsWords(instance);
  for (const n of numbers) {
    const frame = ranges[n - 1];
    if (!frame) throw new NotFound(`frame ${n} has no pixel data`);
    const chunks = await dataSetRanges(source, instance, frame);
    // Frames are served as Explicit VR Little Endian: big endian words are turned around.
    yield { length: frame.reduce((sum, [, length]) => sum + length, 0), chunks: swap16 ? swapped16(chunks) : chunks };
  }
}

/** One frame in one buffer (rendering needs all of it), filled as it streams in rather than joined at the end. */
export async function readFrame(source: DataSetSource, instance: StoredInstance, n: number): Promise<Buffer> {
  for await (const { length, chunks } of readFrames(source, instance, [n])) return await collect(chunks, length);
  throw new NotFound(`frame ${n} has no pixel data`);
}

/** Frames of 16-bit words stored big endian, which are sent little endian. */
export function turnsWords(instance: StoredInstance): boolean {
  return instance.transferSyntaxUid === TransferSyntax.ExplicitVRBigEndian && bitsAllocated(instance) === 16;
}

function bitsAllocated(instance: StoredInstance): number {
  const json = JSON.parse(instance.json) as Record<string, { Value?: number[] }>;
  return json[Tag.BitsAllocated]?.Value?.[0] ?? 16;
}

/** 16-bit words turned around as they stream by; a byte left over at a chunk's end waits for the next chunk. */
async function* swapped16(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  let carry: Buffer | undefined;
  for await (const chunk of chunks) {
    const bytes = carry ? Buffer.concat([carry, chunk]) : Buffer.from(chunk);
    const even = bytes.length & ~1;
    carry = even < bytes.length ? bytes.subarray(even) : undefined;
    if (even > 0) yield bytes.subarray(0, even).swap16();
  }
  if (carry) yield carry;
}
