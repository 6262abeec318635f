import zlib from 'node:zlib';
import dicomParser from 'dicom-parser';
import { TransferSyntax, isKnownTransferSyntax } from './transfer-syntax.js';
import { DicomParseError } from './parse-error.js';
import { assertUid, isValidUid } from './uid.js';
import { LONG_VRS, walkDataSet } from './walk.js';

export { DicomParseError };

export type Element = dicomParser.Element;
export type DataSet = dicomParser.DataSet;

export type ParsedHeader = {
  dataSet: DataSet;
  transferSyntaxUID: string;
  sopClassUID: string;
  sopInstanceUID: string;
  studyInstanceUID: string;
  seriesInstanceUID: string;
  /** PixelData (or float variants) as found: dataOffset is in the (inflated) data set's bytes. */
  pixelData?: Element;
  /** The bytes the offsets refer to, or a prefix of them: the file itself, or its meta information and inflated data set. */
  bytes: Buffer;
  /** The whole length of what `bytes` begins: the file's size, or its meta information and inflated data set. */
  size: number;
  /** True when bytes is not the file as stored (Deflated Explicit VR Little Endian). */
  inflated: boolean;
  /** The file meta information's UIDs that differ from the data set's, as they are written there. */
  differingMetaUids?: DifferingMetaUids;
};

/**
 * The data set's SOPClassUID and SOPInstanceUID name the instance: every query and retrieve uses them. The file
 * meta information (PS3.10 7.1) should repeat them but some writers do not; the file is read anyway.
 */
export type DifferingMetaUids = { mediaStorageSOPClassUID?: string; mediaStorageSOPInstanceUID?: string };

/** Pixel Data and its float variants (PS3.3 C.7.6.3), as dicom-parser keys them. */
export const PIXEL_TAGS: readonly string[] = ['x7fe00010', 'x7fe00008', 'x7fe00009'];
const MAX_NESTING = 64;
const NESTED_TOO_DEEP = `sequences are nested more than ${MAX_NESTING} deep`;

/** A deflated data set inflated in place is held whole, twice over while it is joined to the meta information. */
const MAX_INFLATE_HERE = 64 * 1024 * 1024;

export type ParseOptions = {
  /**
   * How a Deflated Explicit VR Little Endian data set is read: 'ask' throws NeedsInflating (ingest inflates it as a
   * stream, off the event loop); 'inflated': `bytes` hold the meta information and the data set inflated already;
   * 'here' (for a file already held whole: tools, tests) inflates it synchronously, up to MAX_INFLATE_HERE bytes.
   */
  deflated?: 'ask' | 'inflated' | 'here';
};

/**
 * Parses a Part 10 file up to its pixel data (PS3.10 7.1). `bytes` may be a prefix of a larger file
 * of `fileSize` bytes: NeedMoreBytes asks the caller for a longer prefix. A few KB deflated may inflate to
 * gigabytes: with `deflated: 'ask'`, NeedsInflating asks the caller to inflate it, bounded and off the event loop,
 * and to call again with the inflated bytes and `deflated: 'inflated'`.
 */
export function parsePart10(bytes: Buffer, fileSize = bytes.length, options: ParseOptions = {}): ParsedHeader {
  const deflated = options.deflated ?? 'here';
  if (bytes.length < 132 || bytes.toString('latin1', 128, 132) !== 'DICM') {
    throw new DicomParseError('not a DICOM Part 10 file: the 128-byte preamble and "DICM" prefix are missing');
  }
  const partial = bytes.length < fileSize;
  let dataSet: DataSet;
  let inflated = false;
  try {
    const checked = checkElements(bytes, deflated, partial, fileSize);
    inflated = checked.inflated;
    dataSet = inflated ? parseInflated(checked.plain, checked.meta) : dicomParser.parseDicom(checked.plain, { untilTag: 'x7fe00010' });
  } catch (e) {
    if (e instanceof NeedMoreBytes || e instanceof NeedsInflating || e instanceof DicomParseError) throw e;
    if (partial) throw new NeedMoreBytes(bytes.length * 2);
    // The parser stops at the first problem; what it read up to there names the element at fault.
    const readSoFar = (e as { dataSet?: DataSet } | undefined)?.dataSet;
    if (readSoFar) checkStructure(readSoFar, readSoFar.byteArray.length, false, 0);
    throw new DicomParseError(`unreadable DICOM data set${readSoFar ? stoppedAt(readSoFar) : ''}: ${describeParserError(e)}`);
  }
  const source = dataSet.byteArray as Buffer;
  checkStructure(dataSet, source.length, partial, 0);

  const pixelData = PIXEL_TAGS.map((t) => dataSet.elements[t]).find((e) => e !== undefined);
  if (partial && !pixelData) throw new NeedMoreBytes(bytes.length * 2);

  const transferSyntaxUID = uidIn(dataSet, 'x00020010');
  if (!transferSyntaxUID) throw new DicomParseError('the meta header has no Transfer Syntax UID (0002,0010)');
  if (!isKnownTransferSyntax(transferSyntaxUID)) {
    throw new DicomParseError(`transfer syntax ${transferSyntaxUID} is not one this server knows`);
  }
  const sopInstanceUID = assertUid('SOPInstanceUID (0008,0018)', uidIn(dataSet, 'x00080018'));
  const sopClassUID = assertUid('SOPClassUID (0008,0016)', uidIn(dataSet, 'x00080016') ?? uidIn(dataSet, 'x00020002'));
  const [mediaClass, mediaInstance] = [uidIn(dataSet, 'x00020002'), uidIn(dataSet, 'x00020003')];
  const differingMetaUids: DifferingMetaUids = {
    ...(mediaClass && mediaClass !== sopClassUID ? { mediaStorageSOPClassUID: mediaClass } : {}),
    ...(mediaInstance && mediaInstance !== sopInstanceUID ? { mediaStorageSOPInstanceUID: mediaInstance } : {}),
  };
  return {
    dataSet,
    transferSyntaxUID,
    sopClassUID,
    sopInstanceUID,
    studyInstanceUID: assertUid('StudyInstanceUID (0020,000D)', uidIn(dataSet, 'x0020000d')),
    seriesInstanceUID: assertUid('SeriesInstanceUID (0020,000E)', uidIn(dataSet, 'x0020000e')),
    pixelData,
    bytes: source,
    // Inflated here, the data set is all in `source`; inflated by the caller, fileSize counts it.
    size: inflated && deflated === 'here' ? source.length : fileSize,
    inflated,
    ...(Object.keys(differingMetaUids).length ? { differingMetaUids } : {}),
  };
}

/**
 * The SOP Class and SOP Instance UIDs the file meta information (PS3.10 7.1) names, read from the first bytes of a
 * file that is not parsed (refused for its size); each only when present and a valid UID.
 */
export function fileMetaUids(head: Buffer): { sopClassUid?: string; sopInstanceUid?: string } {
  // (0002,0000) FileMetaInformationGroupLength, first and Type 1, says where the meta information ends: read only
  // when all of it is there, lest a value cut short pass for a shorter UID.
  if (head.length < 144 || head.toString('latin1', 128, 132) !== 'DICM' || head.readUInt32LE(132) !== 0x00000002 || head.toString('latin1', 136, 138) !== 'UL') return {};
  const end = 144 + head.readUInt32LE(140);
  if (head.length < end) return {};
  let meta: DataSet;
  try {
    meta = dicomParser.readPart10Header(head.subarray(0, end));
  } catch {
    return {};
  }
  const [sopClassUid, sopInstanceUid] = [uidIn(meta, 'x00020002'), uidIn(meta, 'x00020003')];
  return { ...(isValidUid(sopClassUid) ? { sopClassUid } : {}), ...(isValidUid(sopInstanceUid) ? { sopInstanceUid } : {}) };
}

/** Thrown while parsing a prefix: the header continues past it. */
export class NeedMoreBytes extends Error {
  constructor(readonly atLeast: number) {
    super(`need at least ${atLeast} bytes`);
  }
}

/** Thrown for a deflated data set not yet inflated: it begins at `offset` of the file. */
export class NeedsInflating extends Error {
  constructor(readonly offset: number) {
    super(`the data set from offset ${offset} is deflated`);
  }
}

/**
 * A UID as its bytes hold it, without its padding (PS3.5 9.1: one trailing NUL; trailing spaces are tolerated).
 * dicom-parser's own reading stops at the first NUL, which would turn `1.2.3\0.4` into `1.2.3`; here the NUL stays and is refused.
 */
function uidIn(dataSet: DataSet, tag: string): string | undefined {
  const element = dataSet.elements[tag];
  if (!element) return undefined;
  return (dataSet.byteArray as Buffer).toString('latin1', element.dataOffset, element.dataOffset + element.length).replace(/[\0 ]+$/, '');
}

/** The file meta information's elements; `position`: where the data set begins. */
type MetaInformation = DataSet & { position: number };

/**
 * The element walk (walk.ts) over the data set, in the encoding its meta information names; a deflated one is
 * inflated first (or the caller asked to). Returns the bytes to parse: meta information and a plain data set.
 */
function checkElements(
  bytes: Buffer,
  deflated: NonNullable<ParseOptions['deflated']>,
  partial: boolean,
  fileSize: number,
): { plain: Buffer; meta: MetaInformation; inflated: boolean } {
  // Only the meta information: dicom-parser reads the element after it whole, and deflated bytes can pass for a
  // sequence it then fails to find items in.
  const meta = dicomParser.readPart10Header(bytes.subarray(0, metaInformationEnd(bytes))) as MetaInformation;
  const syntax = uidIn(meta, 'x00020010');
  const inflated = syntax === TransferSyntax.DeflatedExplicitVRLittleEndian;
  if (!syntax || !isKnownTransferSyntax(syntax)) return { plain: bytes, meta, inflated }; // named after parsing
  let plain = bytes;
  if (inflated && deflated !== 'inflated') {
    if (deflated === 'ask') throw new NeedsInflating(meta.position);
    if (partial) throw new NeedMoreBytes(fileSize);
    plain = Buffer.concat([bytes.subarray(0, meta.position), inflateHere(bytes.subarray(meta.position))]);
  }
  const walked = walkDataSet(plain, meta.position, { explicitVr: syntax !== TransferSyntax.ImplicitVRLittleEndian, littleEndian: syntax !== TransferSyntax.ExplicitVRBigEndian });
  // A prefix that ends before the pixel data is not worth parsing: a large header would be parsed once per doubling.
  if (partial && walked.stopped === 'ran-out') throw new NeedMoreBytes(Math.max(bytes.length * 2, walked.atLeast));
  if (partial && walked.stopped === 'end') throw new NeedMoreBytes(bytes.length * 2);
  return { plain, meta, inflated };
}

/** dicom-parser's DataSet constructor, which its typings leave out. */
const ParserDataSet = (dicomParser as unknown as { DataSet: new (parser: dicomParser.ByteArrayParser, bytes: Buffer, elements: Record<string, Element>) => DataSet }).DataSet;

/**
 * Meta information and an inflated data set, parsed as parseDicom parses a plain file. Not through parseDicom's
 * `inflater` hook: it reads the bytes the hook returns from offset 0, taking the preamble and "DICM" for elements.
 */
function parseInflated(plain: Buffer, meta: MetaInformation): DataSet {
  const dataSet = new ParserDataSet(dicomParser.littleEndianByteArrayParser, plain, {});
  try {
    dicomParser.parseDicomDataSetExplicit(dataSet, new dicomParser.ByteStream(dicomParser.littleEndianByteArrayParser, plain, meta.position), plain.length, { untilTag: 'x7fe00010' });
  } catch (exception) {
    // What parseDicom throws, so that one catch reads both: the cause, and the elements read before it.
    throw { exception, dataSet };
  }
  Object.assign(dataSet.elements, meta.elements);
  return dataSet;
}

/**
 * The attributes of a stored instance up to its pixel data, for reads that parse again what ingest checked: `head` is
 * the file's first bytes, its data set inflated already when it is deflated (as read/ hands it out).
 */
export function parseStoredHead(head: Buffer): DataSet {
  const meta = dicomParser.readPart10Header(head.subarray(0, metaInformationEnd(head))) as MetaInformation;
  if (uidIn(meta, 'x00020010') === TransferSyntax.DeflatedExplicitVRLittleEndian) return parseInflated(head, meta);
  return dicomParser.parseDicom(head, { untilTag: 'x7fe00010' });
}

/** Where the group 0002 elements after "DICM" end (PS3.10 7.1: explicit VR little endian, whatever the data set's syntax). */
function metaInformationEnd(bytes: Buffer): number {
  let at = 132;
  while (at + 8 <= bytes.length && bytes.readUInt16LE(at) === 0x0002) {
    const vr = bytes.toString('latin1', at + 4, at + 6);
    if (!LONG_VRS.has(vr)) at += 8 + bytes.readUInt16LE(at + 6);
    else if (at + 12 > bytes.length) break;
    else at += 12 + bytes.readUInt32LE(at + 8);
  }
  return Math.min(at, bytes.length);
}

function inflateHere(deflated: Buffer): Buffer {
  try {
    return zlib.inflateRawSync(deflated, { maxOutputLength: MAX_INFLATE_HERE });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new DicomParseError(`the deflated data set inflates to more than ${MAX_INFLATE_HERE} bytes`);
    throw new DicomParseError(`the deflated data set does not inflate (${(e as Error).message}): the file is cut short or corrupt`);
  }
}

/**
 * dicom-parser trusts declared lengths and lets an element or sequence without its delimiter run to the end of
 * the data. Refused here: an element past the end of the file, an undefined length where only sequences and
 * pixel data may have one (PS3.5 7.1.3), a sequence or item without its delimiter, nesting past MAX_NESTING.
 * On a prefix (`partial`), what may lie in the rest of the file asks for more bytes instead.
 */
function checkStructure(dataSet: DataSet, end: number, partial: boolean, depth: number): void {
  if (depth > MAX_NESTING) throw new DicomParseError(NESTED_TOO_DEEP);
  const cutShort = (problem: string, atLeast = end * 2): never => {
    if (partial) throw new NeedMoreBytes(atLeast);
    throw new DicomParseError(`${problem}: the file is cut short or corrupt`);
  };
  for (const element of Object.values(dataSet.elements)) {
    const isPixelData = PIXEL_TAGS.includes(element.tag);
    // Pixel data is the one element allowed past a prefix; frameRanges checks it against the whole file.
    if (depth === 0 && isPixelData) continue;
    const name = tagName(element.tag);
    const declaredEnd = element.dataOffset + (element.hadUndefinedLength ? 0 : element.length);
    if (declaredEnd > end) {
      cutShort(`element ${name} declares ${element.length} bytes at offset ${element.dataOffset}, past the end of the file (${end} bytes)`, Math.max(end * 2, declaredEnd + 1024));
    }
    if (!element.items) {
      if (element.hadUndefinedLength && !isPixelData) {
        throw new DicomParseError(`element ${name} has undefined length, which only sequences and encapsulated pixel data may have`);
      }
      continue;
    }
    for (const item of element.items) {
      if (item.hadUndefinedLength && !item.dataSet?.elements.xfffee00d) cutShort(`an item of sequence ${name} has undefined length and no item delimiter before the end of the file`);
      if (item.dataSet) checkStructure(item.dataSet, end, partial, depth + 1);
    }
    if (element.hadUndefinedLength && !isTag(dataSet, element.dataOffset + element.length, 0xfffe, 0xe0dd)) {
      cutShort(`sequence ${name} has undefined length and no sequence delimiter before the end of the file`);
    }
  }
}

function isTag(dataSet: DataSet, offset: number, group: number, element: number): boolean {
  const { byteArray, byteArrayParser: read } = dataSet;
  return offset + 4 <= byteArray.length && read.readUint16(byteArray, offset) === group && read.readUint16(byteArray, offset + 2) === element;
}

/** Where a failed parse stopped: just after the last element it read whole. */
function stoppedAt(readSoFar: DataSet): string {
  const elements = Object.values(readSoFar.elements);
  if (elements.length === 0) return '';
  // An undefined-length sequence is followed by its 8-byte delimiter.
  const ends = elements.map((e) => e.dataOffset + e.length + (e.hadUndefinedLength && e.items ? 8 : 0));
  const offset = Math.max(...ends);
  const { byteArray, byteArrayParser: read } = readSoFar;
  if (offset + 4 > byteArray.length) return ` after element ${tagName(elements[ends.indexOf(offset)]!.tag)}`;
  const tag = `x${read.readUint16(byteArray, offset).toString(16).padStart(4, '0')}${read.readUint16(byteArray, offset + 2).toString(16).padStart(4, '0')}`;
  return ` at element ${tagName(tag)} (offset ${offset})`;
}

/** `x7fe00010` → `(7FE0,0010)`, as DICOM people write tags. */
function tagName(tag: string): string {
  return `(${tag.slice(1, 5)},${tag.slice(5, 9)})`.toUpperCase();
}

function describeParserError(e: unknown): string {
  const inner = (e as { exception?: unknown })?.exception ?? e;
  if (inner instanceof RangeError && /call stack/i.test(inner.message)) return NESTED_TOO_DEEP;
  const text = inner instanceof Error ? inner.message : String(inner);
  if (/past end of buffer|buffer overr(un|ead)/i.test(text)) return 'the file ends inside an element: it is cut short, or a length in it is wrong';
  if (/missing required meta header attribute 0002,0010/.test(text)) return 'the file meta information has no Transfer Syntax UID (0002,0010): the file is cut short or corrupt';
  if (/invalid value for parameter 'maxP ?osition'/.test(text)) return 'a sequence item declares more bytes than its sequence or the file holds: a length in it is wrong';
  if (/item tag \(FFFE,E000\) not found/.test(text)) return `${text.replace(/^dicomParser[.:]\w+: /, '')}: a sequence lacks its delimiter, or a length in it is wrong`;
  return text.replace(/^dicomParser[.:]\w+: /, '').slice(0, 200);
}

export { TransferSyntax };
