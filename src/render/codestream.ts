/**
 * What a compressed frame says about itself, read from its first marker segments without decoding it:
 * enough to pick the codec and to refuse a frame whose size disagrees with the data set before any
 * codec allocates for it. Not a decoder: it stops at the frame header.
 */
export type CodestreamHeader = {
  family: 'jpeg' | 'j2k';
  /** JPEG: the start-of-frame marker (0xFFC0 baseline … 0xFFC3 lossless, 0xFFF7 JPEG-LS); J2K: 0xFF51 (SIZ). */
  frameMarker: number;
  /** J2K only: HTJ2K codestreams set bit 14 of Rsiz (ITU-T T.814 A.2). */
  highThroughput: boolean;
  width: number;
  height: number;
  components: number;
  /** Bits per sample of the first component. */
  precision: number;
  /** Where the codestream starts in the frame (after a JP2 file wrapper, when there is one). */
  offset: number;
  /** J2K only: the fewest wavelet decomposition levels the main header gives a component (COD, COC); 0 for JPEG. */
  decompositions: number;
};

export class CodestreamError extends Error {}

/** JPEG family (ISO 10918-1 B.2, ISO 14495-1 C.2): SOI, then marker segments up to the start-of-frame. */
export function jpegHeader(bytes: Uint8Array): CodestreamHeader {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== 0xd8) throw new CodestreamError('it does not begin with a JPEG start-of-image marker (FFD8)');
  let p = 2;
  for (;;) {
    while (p < bytes.length && bytes[p] === 0xff && bytes[p + 1] === 0xff) p++; // fill bytes
    if (p + 4 > bytes.length) throw new CodestreamError('it ends before its start-of-frame marker');
    if (bytes[p] !== 0xff) throw new CodestreamError(`a marker was expected at byte ${p}`);
    const marker = 0xff00 | bytes[p + 1]!;
    if ((marker >= 0xffd0 && marker <= 0xffd7) || marker === 0xff01) {
      p += 2;
      continue;
    }
    const length = (bytes[p + 2]! << 8) | bytes[p + 3]!;
    if (length < 2) throw new CodestreamError(`marker ${hex(marker)} has a segment length of ${length}`);
    if (isStartOfFrame(marker)) {
      if (p + 10 > bytes.length) throw new CodestreamError('its start-of-frame segment is cut short');
      return {
        family: 'jpeg',
        frameMarker: marker,
        highThroughput: false,
        precision: bytes[p + 4]!,
        height: (bytes[p + 5]! << 8) | bytes[p + 6]!,
        width: (bytes[p + 7]! << 8) | bytes[p + 8]!,
        components: bytes[p + 9]!,
        offset: 0,
        decompositions: 0,
      };
    }
    if (marker === 0xffda || marker === 0xffd9) throw new CodestreamError(`it reaches marker ${hex(marker)} without a start-of-frame`);
    p += 2 + length;
  }
}

/** JPEG 2000 and HTJ2K (ITU-T T.800 A.5.1): SOC then SIZ, possibly inside a JP2 file (T.800 I.5). */
export function j2kHeader(bytes: Uint8Array): CodestreamHeader {
  const offset = jp2CodestreamOffset(bytes);
  const b = bytes.subarray(offset);
  if (b.length < 4 || b[0] !== 0xff || b[1] !== 0x4f || b[2] !== 0xff || b[3] !== 0x51) {
    throw new CodestreamError('it does not begin with the JPEG 2000 SOC and SIZ markers (FF4F FF51)');
  }
  if (b.length < 4 + 38 + 3) throw new CodestreamError('its SIZ segment is cut short');
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const rsiz = view.getUint16(6);
  const width = view.getUint32(8) - view.getUint32(16);
  const height = view.getUint32(12) - view.getUint32(20);
  const components = view.getUint16(40);
  const ssiz = b[42]!;
  const decompositions = decompositionLevels(b, view, 4 + view.getUint16(4), components);
  return { family: 'j2k', frameMarker: 0xff51, highThroughput: (rsiz & 0x4000) !== 0, width, height, components, precision: (ssiz & 0x7f) + 1, offset, decompositions };
}

/** The fewest decomposition levels in the main header's COD and COC segments (T.800 A.6.1, A.6.2), read up to the first tile. */
function decompositionLevels(b: Uint8Array, view: DataView, start: number, components: number): number {
  let levels = 0;
  let found = false;
  for (let p = start; p + 4 <= b.length; ) {
    const marker = view.getUint16(p);
    if (marker === 0xff90 || (marker >> 8) !== 0xff) break; // SOT: the main header is over
    const length = view.getUint16(p + 2);
    // COD: Scod, SGcod (4 bytes), then SPcod's first byte; COC: Ccoc (1 or 2 bytes), Scoc, then SPcoc's.
    const at = marker === 0xff52 ? p + 9 : marker === 0xff53 ? p + 5 + (components < 257 ? 1 : 2) : -1;
    if (at >= 0 && at < b.length) {
      levels = found ? Math.min(levels, b[at]!) : b[at]!;
      found = true;
    }
    p += 2 + length;
  }
  return levels;
}

/**
 * True when the stream ends with its end marker (JPEG EOI, J2K EOC; both FFD9), allowing the zero
 * padding of an odd-length fragment. Some codecs fill in a cut-short stream with grey and call it a
 * success; this is how such a frame is caught.
 */
export function endsWithEndMarker(bytes: Uint8Array): boolean {
  let end = bytes.length;
  // Fragments are padded to even length, with 0x00 or (as some writers do) a 0xFF fill byte after the marker.
  while (end > 2 && (bytes[end - 1] === 0x00 || (bytes[end - 1] === 0xff && bytes[end - 2] === 0xd9))) end--;
  return end >= 2 && bytes[end - 2] === 0xff && bytes[end - 1] === 0xd9;
}

function isStartOfFrame(marker: number): boolean {
  // C4 (DHT), C8 (JPG) and CC (DAC) share the range but are not frames.
  return (marker >= 0xffc0 && marker <= 0xffcf && marker !== 0xffc4 && marker !== 0xffc8 && marker !== 0xffcc) || marker === 0xfff7;
}

/** Offset of the contiguous codestream box of a JP2 file, or 0 for a bare codestream. */
function jp2CodestreamOffset(bytes: Uint8Array): number {
  const isJp2 = bytes.length >= 12 && bytes[3] === 0x0c && String.fromCharCode(...bytes.subarray(4, 8)) === 'jP  ';
  if (!isJp2) return 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let p = 0;
  while (p + 8 <= bytes.length) {
    let length = view.getUint32(p);
    const type = String.fromCharCode(...bytes.subarray(p + 4, p + 8));
    let header = 8;
    if (length === 1) {
      if (p + 16 > bytes.length) break;
      length = Number(view.getBigUint64(p + 8));
      header = 16;
    }
    if (type === 'jp2c') return p + header;
    if (length === 0 || length < header) break;
    p += length;
  }
  throw new CodestreamError('it is a JP2 file without a codestream box');
}

function hex(marker: number): string {
  return marker.toString(16).toUpperCase().padStart(4, '0');
}
