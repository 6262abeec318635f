import { DicomParseError, type ParsedHeader } from './parse.js';
import { isEncapsulated } from './transfer-syntax.js';

/** A frame is one or more byte ranges of the stored file (several when a frame spans fragments). */
export type FrameRange = Array<[offset: number, length: number]>;

/** Random access to the stored bytes, so encapsulated pixel data is walked without loading it. */
export type ByteReader = { size: number; read(offset: number, length: number): Promise<Buffer> };

const ITEM = 0xe000fffe; // (FFFE,E000) read as one little-endian uint32
const SEQUENCE_DELIMITER = 0xe0ddfffe;

/**
 * Bytes a native frame occupies: 1-bit frames are packed (PS3.5 8.1.1), and YBR_FULL_422 keeps one Cb and one Cr for
 * each pair of pixels (PS3.3 C.7.6.3.1.2), two samples a pixel rather than three.
 */
export function nativeFrameBytes(o: { rows: number; columns: number; samplesPerPixel: number; bitsAllocated: number; photometric: string }): number {
  if (is422(o)) return o.rows * Math.ceil(o.columns / 2) * 4 * (o.bitsAllocated / 8);
  return Math.ceil((o.rows * o.columns * o.samplesPerPixel * o.bitsAllocated) / 8);
}

/** Native colour stored with chroma halved across each row (YBR_FULL_422; YBR_PARTIAL_422 is retired but alike). */
export function is422(o: { samplesPerPixel: number; photometric: string }): boolean {
  return o.samplesPerPixel === 3 && (o.photometric === 'YBR_FULL_422' || o.photometric === 'YBR_PARTIAL_422');
}

export function numberOfFrames(header: ParsedHeader): number {
  const n = Number.parseInt(header.dataSet.string('x00280008') ?? '1', 10);
  return Number.isFinite(n) && n > 0 ? n : 1;
}

/**
 * Byte ranges of every frame (PS3.5 A.4 for encapsulated data, 8.2 for native), so that WADO-RS
 * frames are ranged reads. Offsets refer to header.bytes when the file was inflated, else to the file.
 */
export async function frameRanges(header: ParsedHeader, reader: ByteReader): Promise<FrameRange[]> {
  const pixels = header.pixelData;
  if (!pixels) return [];
  const frames = numberOfFrames(header);
  const size = header.size;
  if (!isEncapsulated(header.transferSyntaxUID)) {
    if (pixels.hadUndefinedLength) throw new DicomParseError('native pixel data must have a defined length');
    if (pixels.dataOffset + pixels.length > size) {
      throw new DicomParseError(`PixelData declares ${pixels.length} bytes but the file ends ${size - pixels.dataOffset} bytes after it starts: the file is cut short or corrupt`);
    }
    const ds = header.dataSet;
    const rows = ds.uint16('x00280010') ?? 0;
    const columns = ds.uint16('x00280011') ?? 0;
    const samples = ds.uint16('x00280002') ?? 1;
    const bits = ds.uint16('x00280100') ?? 16;
    const frameBytes = nativeFrameBytes({ rows, columns, samplesPerPixel: samples, bitsAllocated: bits, photometric: ds.string('x00280004') ?? '' });
    if (frameBytes === 0) throw new DicomParseError('Rows, Columns or BitsAllocated is missing for native pixel data');
    if (frameBytes * frames > pixels.length) {
      throw new DicomParseError(
        `PixelData holds ${pixels.length} bytes but ${frames} frame(s) of ${rows}×${columns}×${samples} at ${bits} bits need ${frameBytes * frames}`,
      );
    }
    return Array.from({ length: frames }, (_, i) => [[pixels.dataOffset + i * frameBytes, frameBytes]]);
  }

  if (!pixels.hadUndefinedLength) throw new DicomParseError('encapsulated pixel data must have undefined length');
  const read = header.inflated
    ? async (offset: number, length: number) => header.bytes.subarray(offset, offset + length)
    : (offset: number, length: number) => reader.read(offset, length);
  const items: Array<[number, number]> = [];
  let position = pixels.dataOffset;
  for (;;) {
    if (position + 8 > size) throw new DicomParseError('encapsulated pixel data ends without a sequence delimiter');
    const head = await read(position, 8);
    const tag = head.readUInt32LE(0);
    const length = head.readUInt32LE(4);
    if (tag === SEQUENCE_DELIMITER) break;
    if (tag !== ITEM) throw new DicomParseError(`unexpected tag inside encapsulated pixel data at offset ${position}`);
    if (position + 8 + length > size) throw new DicomParseError(`a pixel data fragment at offset ${position} runs past the end of the file`);
    items.push([position + 8, length]);
    position += 8 + length;
  }
  const [offsetTable, ...fragments] = items;
  if (!offsetTable) throw new DicomParseError('encapsulated pixel data has no Basic Offset Table item');
  if (fragments.length === 0) throw new DicomParseError('encapsulated pixel data has no fragments');
  if (frames === 1) return [fragments];
  if (fragments.length === frames) return fragments.map((f) => [f]);
  if (offsetTable[1] >= frames * 4) {
    const table = await read(offsetTable[0], frames * 4);
    const firstFragment = fragments[0]![0] - 8;
    const starts = Array.from({ length: frames }, (_, i) => firstFragment + table.readUInt32LE(i * 4));
    return starts.map((start, i) => {
      const end = starts[i + 1] ?? Number.POSITIVE_INFINITY;
      return fragments.filter(([offset]) => offset - 8 >= start && offset - 8 < end);
    });
  }
  // No offset table: JPEG-family frames each begin with a Start Of Image marker (PS3.5 A.4.1).
  const grouped: FrameRange[] = [];
  for (const fragment of fragments) {
    const soi = (await read(fragment[0], 2)).readUInt16BE(0) === 0xffd8;
    if (soi || grouped.length === 0) grouped.push([fragment]);
    else grouped[grouped.length - 1]!.push(fragment);
  }
  if (grouped.length !== frames) {
    throw new DicomParseError(`cannot tell ${frames} frames apart among ${fragments.length} fragments without a Basic Offset Table`);
  }
  return grouped;
}
