import { PIXEL_TAGS, type DataSet, type Element } from './parse.js';
import { isPrivateCreator, isPrivateTag, lookupTag } from './tags.js';
import { TransferSyntax } from './transfer-syntax.js';
import { IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION, tagHeader } from './write.js';
import { LONG_VRS } from './walk.js';

/**
 * Writing a parsed data set again in Explicit VR Little Endian (PS3.5 7.1.2, A.2), the syntax every origin server
 * must be able to send (PS3.18 8.7.3.4): values are kept byte for byte (turned around from big endian by their VR),
 * implicit VRs are taken from the dictionary (PS3.5 6.2.2), and only the elements named in `replace` change.
 */

/** One top-level element to write instead of the one the data set holds (or in addition, in tag order). */
export type Replacement = { tag: string; vr: string; value: Buffer };

export type RewriteOptions = {
  /** The data set was read as Explicit VR Big Endian: values of multi-byte VRs are turned around. */
  bigEndian: boolean;
  /** Top-level elements to write instead, by tag (`00280004`). */
  replace?: Replacement[];
  /** Chooses between US and SS where the dictionary allows both (PS3.3 C.7.6.3.1.x, pixel value attributes). */
  pixelRepresentation?: number;
};

/** Bytes a value of each VR swaps as, when turned from big to little endian; absent: bytes, kept as they are. */
const WORD_BYTES: Record<string, number> = { US: 2, SS: 2, OW: 2, AT: 2, UL: 4, SL: 4, FL: 4, OL: 4, OF: 4, FD: 8, OD: 8, SV: 8, UV: 8, OV: 8 };
/** Long VRs of PS3.5 Table 7.1-1, which dicom-parser's list lacks (OV, SV, UV are newer). */
const LONG = new Set([...LONG_VRS, 'OV', 'SV', 'UV']);
/** Extended Offset Table and its lengths (PS3.5 A.4): they describe encapsulated pixel data, never native. */
const OFFSET_TABLE_TAGS = new Set(['7FE00001', '7FE00002', '7FE00003']);
/** The dictionary says "US or SS" for these; it lists US, right for unsigned pixels only. */
const PIXEL_VALUE_TAGS = new Set(['00280104', '00280105', '00280106', '00280107', '00280108', '00280109', '00280110', '00280111', '00280120', '00280121', '00281101', '00281102', '00281103', '00283002']);

/**
 * The data set's elements (the top-level pixel data and everything after it left out: the caller writes those),
 * group lengths dropped (they would be wrong once lengths change; PS3.5 7.2 retired them).
 */
export function rewriteExplicitLittleEndian(dataSet: DataSet, options: RewriteOptions): Buffer {
  const chunks: Buffer[] = [];
  const replaced = new Map((options.replace ?? []).map((r) => [r.tag, r]));
  const tags = new Set([...Object.keys(dataSet.elements).map((k) => k.slice(1).toUpperCase()), ...replaced.keys()]);
  for (const tag of [...tags].sort()) {
    if (PIXEL_TAGS.includes(`x${tag.toLowerCase()}`)) break;
    if (OFFSET_TABLE_TAGS.has(tag)) continue;
    const replacement = replaced.get(tag);
    if (replacement) chunks.push(elementHeader(tag, replacement.vr, replacement.value.length), replacement.value);
    else writeElement(dataSet, dataSet.elements[`x${tag.toLowerCase()}`]!, tag, options, chunks);
  }
  return Buffer.concat(chunks);
}

/** One top-level element as the rewrite writes it: its header and value, a sequence with undefined lengths. */
export function encodedElement(dataSet: DataSet, tag: string, options: RewriteOptions): Buffer {
  const out: Buffer[] = [];
  writeElement(dataSet, dataSet.elements[`x${tag.toLowerCase()}`]!, tag, options, out);
  return Buffer.concat(out);
}

function writeElement(dataSet: DataSet, element: Element, tag: string, options: RewriteOptions, out: Buffer[]): void {
  if (tag.endsWith('0000') || tag.startsWith('0002') || tag.startsWith('FFFE')) return;
  if (element.items) {
    out.push(elementHeader(tag, 'SQ', UNDEFINED));
    for (const item of element.items) {
      out.push(tagHeader(0xfffe, 0xe000, UNDEFINED));
      if (item.dataSet) {
        const nested = item.dataSet;
        for (const key of Object.keys(nested.elements).sort()) writeElement(nested, nested.elements[key]!, key.slice(1).toUpperCase(), options, out);
      }
      out.push(tagHeader(0xfffe, 0xe00d, 0));
    }
    out.push(tagHeader(0xfffe, 0xe0dd, 0));
    return;
  }
  let vr = element.vr ?? impliedVr(tag, options.pixelRepresentation);
  const value = Buffer.from((dataSet.byteArray as Buffer).subarray(element.dataOffset, element.dataOffset + element.length));
  if (options.bigEndian && element.vr) swapWords(value, WORD_BYTES[vr]);
  // A value too long for a short length field can only be written as UN (PS3.5 6.2.2 note).
  if (!LONG.has(vr) && value.length > 0xffff) vr = 'UN';
  out.push(elementHeader(tag, vr, value.length), value);
}

/** PS3.5 6.2.2: the dictionary's VR where the tag is known; private creators are LO, other private or unknown tags UN. */
function impliedVr(tag: string, pixelRepresentation = 0): string {
  if (isPrivateTag(tag)) return isPrivateCreator(tag) ? 'LO' : 'UN';
  if (PIXEL_VALUE_TAGS.has(tag) && pixelRepresentation === 1) return 'SS';
  return lookupTag(tag)?.vr ?? 'UN';
}

function swapWords(bytes: Buffer, size: number | undefined): void {
  if (size === 2 && bytes.length % 2 === 0) bytes.swap16();
  else if (size === 4 && bytes.length % 4 === 0) bytes.swap32();
  else if (size === 8 && bytes.length % 8 === 0) bytes.swap64();
}

const UNDEFINED = 0xffffffff;

/** An element's tag, VR and length in Explicit VR Little Endian; `length` UNDEFINED for a sequence or encapsulated pixel data. */
export function elementHeader(tag: string, vr: string, length: number): Buffer {
  const long = LONG.has(vr);
  const header = Buffer.alloc(long ? 12 : 8);
  header.writeUInt16LE(Number.parseInt(tag.slice(0, 4), 16), 0);
  header.writeUInt16LE(Number.parseInt(tag.slice(4, 8), 16), 2);
  header.write(vr, 4, 'latin1');
  if (long) header.writeUInt32LE(length, 8);
  else header.writeUInt16LE(length, 6);
  return header;
}

/** What the meta information of a file written here says (PS3.10 7.1: the syntax, and the implementation that wrote it). */
const WRITTEN_HERE: Record<string, Buffer> = {
  '00020010': uidValue(TransferSyntax.ExplicitVRLittleEndian),
  '00020012': uidValue(IMPLEMENTATION_CLASS_UID),
  '00020013': textValue(IMPLEMENTATION_VERSION),
};

/**
 * Preamble, "DICM" and the file meta information of `dataSet` (already Explicit VR Little Endian, PS3.10 7.1) with
 * its Transfer Syntax UID set to Explicit VR Little Endian, this server named as the implementation that wrote it, and
 * its group length counted again; the rest as it was.
 */
export function explicitLittleEndianMeta(dataSet: DataSet): Buffer {
  const chunks: Buffer[] = [];
  for (const key of Object.keys(dataSet.elements).sort()) {
    const tag = key.slice(1).toUpperCase();
    if (!tag.startsWith('0002') || tag === '00020000') continue;
    const element = dataSet.elements[key]!;
    const value = WRITTEN_HERE[tag] ?? (dataSet.byteArray as Buffer).subarray(element.dataOffset, element.dataOffset + element.length);
    const vr = element.vr ?? lookupTag(tag)?.vr ?? 'UN';
    chunks.push(elementHeader(tag, vr, value.length), value);
  }
  const meta = Buffer.concat(chunks);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(meta.length);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), elementHeader('00020000', 'UL', 4), groupLength, meta]);
}

/** A UI value padded to even length with NUL (PS3.5 6.2). */
export function uidValue(uid: string): Buffer {
  return Buffer.from(uid.length % 2 ? `${uid}\0` : uid, 'latin1');
}

/** A CS or US value for a replacement: text padded with a space, numbers as 16-bit words. */
export function textValue(text: string): Buffer {
  return Buffer.from(text.length % 2 ? `${text} ` : text, 'latin1');
}

export function usValue(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}
