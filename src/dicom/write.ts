import { randomUUID } from 'node:crypto';
import { TransferSyntax } from './transfer-syntax.js';

/** Our implementation root; instances we create get `2.25.<uuid>` UIDs (PS3.5 B.2). */
export const IMPLEMENTATION_CLASS_UID = '2.25.150951046236340311540574574066452245197';
export const IMPLEMENTATION_VERSION = 'PACSLITE_01';

export type ElementValue = string | string[] | number | number[] | Buffer | WriteElement[][];
export type WriteElement = { tag: string; vr: string; value: ElementValue };

export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString(10)}`;
}

const LONG_LENGTH = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'UC', 'UR', 'UT', 'UN', 'SV', 'UV']);
const NUMERIC: Record<string, [number, (b: Buffer, v: number, o: number, le: boolean) => void]> = {
  US: [2, (b, v, o, le) => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o))],
  SS: [2, (b, v, o, le) => (le ? b.writeInt16LE(v, o) : b.writeInt16BE(v, o))],
  UL: [4, (b, v, o, le) => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o))],
  SL: [4, (b, v, o, le) => (le ? b.writeInt32LE(v, o) : b.writeInt32BE(v, o))],
  FL: [4, (b, v, o, le) => (le ? b.writeFloatLE(v, o) : b.writeFloatBE(v, o))],
  FD: [8, (b, v, o, le) => (le ? b.writeDoubleLE(v, o) : b.writeDoubleBE(v, o))],
};

type Encoding = { explicit: boolean; littleEndian: boolean };

/**
 * A Part 10 file (PS3.10 7.1): preamble, meta header in Explicit VR Little Endian, then the data set
 * in the given transfer syntax. `frames`, when given, become encapsulated pixel data (PS3.5 A.4), one
 * fragment per frame with an empty Basic Offset Table.
 */
export function writePart10(
  dataset: WriteElement[],
  opts: { transferSyntaxUID: string; sopClassUID: string; sopInstanceUID: string; frames?: Buffer[] },
): Buffer {
  const body = encodeElements(dataset, encodingOf(opts.transferSyntaxUID));
  const pixels = opts.frames ? encapsulate(opts.frames) : Buffer.alloc(0);
  return Buffer.concat([fileMetaInformation(opts), body, pixels]);
}

/** A data set alone, without meta information, in the given transfer syntax: a DIMSE identifier (PS3.7 6.3.1). */
export function writeDataSet(dataset: WriteElement[], transferSyntaxUID: string): Buffer {
  return encodeElements(dataset, encodingOf(transferSyntaxUID));
}

function encodingOf(transferSyntaxUID: string): Encoding {
  return {
    explicit: transferSyntaxUID !== TransferSyntax.ImplicitVRLittleEndian,
    littleEndian: transferSyntaxUID !== TransferSyntax.ExplicitVRBigEndian,
  };
}

/**
 * Preamble, "DICM" and the file meta information (PS3.10 7.1) of a file this server writes, in front of a data set
 * encoded in `transferSyntaxUID`; `sourceAeTitle` names the application entity it came from over the network.
 */
export function fileMetaInformation(opts: { transferSyntaxUID: string; sopClassUID: string; sopInstanceUID: string; sourceAeTitle?: string }): Buffer {
  const meta = encodeElements(
    [
      { tag: '00020001', vr: 'OB', value: Buffer.from([0, 1]) },
      { tag: '00020002', vr: 'UI', value: opts.sopClassUID },
      { tag: '00020003', vr: 'UI', value: opts.sopInstanceUID },
      { tag: '00020010', vr: 'UI', value: opts.transferSyntaxUID },
      { tag: '00020012', vr: 'UI', value: IMPLEMENTATION_CLASS_UID },
      { tag: '00020013', vr: 'SH', value: IMPLEMENTATION_VERSION },
      ...(opts.sourceAeTitle ? [{ tag: '00020016', vr: 'AE', value: opts.sourceAeTitle }] : []),
    ],
    { explicit: true, littleEndian: true },
  );
  const groupLength = encodeElements([{ tag: '00020000', vr: 'UL', value: meta.length }], { explicit: true, littleEndian: true });
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), groupLength, meta]);
}

function encapsulate(frames: Buffer[]): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16LE(0x7fe0, 0);
  header.writeUInt16LE(0x0010, 2);
  header.write('OB', 4, 'latin1');
  header.writeUInt32LE(0xffffffff, 8);
  const item = (data: Buffer) => {
    const padded = data.length % 2 ? Buffer.concat([data, Buffer.alloc(1)]) : data;
    const h = Buffer.alloc(8);
    h.writeUInt32LE(0xe000fffe, 0);
    h.writeUInt32LE(padded.length, 4);
    return [h, padded];
  };
  const end = Buffer.alloc(8);
  end.writeUInt32LE(0xe0ddfffe, 0);
  return Buffer.concat([header, ...item(Buffer.alloc(0)), ...frames.flatMap(item), end]);
}

function encodeElements(elements: WriteElement[], enc: Encoding): Buffer {
  const sorted = [...elements].sort((a, b) => (a.tag < b.tag ? -1 : a.tag > b.tag ? 1 : 0));
  // One copy of every header and value into the result: C-FIND answers are written thousands a second.
  return Buffer.concat(sorted.flatMap((e) => encodeElement(e, enc)));
}

/** An element's header and value. */
function encodeElement(element: WriteElement, enc: Encoding): [Buffer, Buffer] {
  const tag = /^[0-9A-F]{8}$/.test(element.tag) ? element.tag : element.tag.replace(/[(),]/g, '').toUpperCase();
  const group = Number.parseInt(tag.slice(0, 4), 16);
  const elem = Number.parseInt(tag.slice(4, 8), 16);
  const value = encodeValue(element, enc);
  const undefinedLength = element.vr === 'SQ';
  const long = LONG_LENGTH.has(element.vr);
  const header = Buffer.alloc(enc.explicit ? (long ? 12 : 8) : 8);
  const u16 = (v: number, o: number) => (enc.littleEndian ? header.writeUInt16LE(v, o) : header.writeUInt16BE(v, o));
  const u32 = (v: number, o: number) => (enc.littleEndian ? header.writeUInt32LE(v, o) : header.writeUInt32BE(v, o));
  u16(group, 0);
  u16(elem, 2);
  const length = undefinedLength ? 0xffffffff : value.length;
  if (!enc.explicit) u32(length, 4);
  else {
    header.write(element.vr, 4, 'latin1');
    if (long) u32(length, 8);
    else u16(length, 6);
  }
  return [header, value];
}

function encodeValue(element: WriteElement, enc: Encoding): Buffer {
  const { vr, value } = element;
  if (vr === 'SQ') {
    const items = (value as WriteElement[][]).map((item) => {
      const content = encodeElements(item, enc);
      return Buffer.concat([delimiter(0xe000, 0xffffffff, enc), content, delimiter(0xe00d, 0, enc)]);
    });
    return Buffer.concat([...items, delimiter(0xe0dd, 0, enc)]);
  }
  if (Buffer.isBuffer(value)) return pad(value, vr === 'UI' || vr.startsWith('O') || vr === 'UN' ? 0 : 0x20);
  const numeric = NUMERIC[vr];
  if (numeric) {
    const values = (Array.isArray(value) ? value : [value]) as number[];
    const out = Buffer.alloc(values.length * numeric[0]);
    values.forEach((v, i) => numeric[1](out, v, i * numeric[0], enc.littleEndian));
    return out;
  }
  const text = Array.isArray(value) ? value.join('\\') : String(value);
  return pad(Buffer.from(text, vr === 'PN' || vr === 'LO' || vr === 'SH' || vr === 'LT' || vr === 'ST' || vr === 'UT' ? 'utf8' : 'latin1'), vr === 'UI' ? 0 : 0x20);
}

function delimiter(element: number, length: number, enc: Encoding): Buffer {
  return tagHeader(0xfffe, element, length, enc.littleEndian);
}

/**
 * A tag and a 32-bit length with no VR between (PS3.5 7.1.2, 7.5): items and delimiters, and every element of an
 * Implicit VR data set such as a DIMSE command set.
 */
export function tagHeader(group: number, element: number, length: number, littleEndian = true): Buffer {
  const b = Buffer.alloc(8);
  if (littleEndian) {
    b.writeUInt16LE(group, 0);
    b.writeUInt16LE(element, 2);
    b.writeUInt32LE(length, 4);
  } else {
    b.writeUInt16BE(group, 0);
    b.writeUInt16BE(element, 2);
    b.writeUInt32BE(length, 4);
  }
  return b;
}

function pad(bytes: Buffer, filler: number): Buffer {
  return bytes.length % 2 ? Buffer.concat([bytes, Buffer.from([filler])]) : bytes;
}
