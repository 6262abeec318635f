import { constants as bufferConstants } from 'node:buffer';
import zlib from 'node:zlib';
import dicomParser from 'dicom-parser';
import { TransferSyntax, isKnownTransferSyntax } from './transfer-syntax.js';
import { assertUid } from './uid.js';

export class DicomParseError extends Error {
  override name = 'DicomParseError';
}

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
  /** The bytes the offsets refer to: the file itself, or the inflated data set of a deflated file. */
  bytes: Buffer;
  /** True when bytes is not the file as stored (Deflated Explicit VR Little Endian). */
  inflated: boolean;
};

const PIXEL_TAGS: readonly string[] = ['x7fe00010', 'x7fe00008', 'x7fe00009'];
const MAX_NESTING = 64;
const MAX_BUFFER = bufferConstants.MAX_LENGTH;
const NESTED_TOO_DEEP = `sequences are nested more than ${MAX_NESTING} deep`;

export type ParseLimits = {
  /** A Deflated Explicit VR Little Endian data set is inflated in memory: never past this many bytes. */
  maxInflatedBytes?: number;
};

/** A deflated data set that would inflate past ParseLimits.maxInflatedBytes; nothing past the limit was allocated. */
export class InflateLimitExceeded extends DicomParseError {
  constructor(readonly limit: number) {
    super(`the deflated data set inflates to more than ${limit} bytes`);
  }
}

/**
 * Parses a Part 10 file up to its pixel data (PS3.10 7.1). `bytes` may be a prefix of a larger file
 * of `fileSize` bytes: NeedMoreBytes asks the caller for a longer prefix.
 */
export function parsePart10(bytes: Buffer, fileSize = bytes.length, limits: ParseLimits = {}): ParsedHeader {
  if (bytes.length < 132 || bytes.toString('latin1', 128, 132) !== 'DICM') {
    throw new DicomParseError('not a DICOM Part 10 file: the 128-byte preamble and "DICM" prefix are missing');
  }
  const partial = bytes.length < fileSize;
  let dataSet: DataSet;
  let inflated = false;
  try {
    dataSet = dicomParser.parseDicom(bytes, {
      untilTag: 'x7fe00010',
      inflater: (whole: Buffer, position: number) => {
        if (partial) throw new NeedMoreBytes(fileSize);
        inflated = true;
        return Buffer.concat([whole.subarray(0, position), inflate(whole.subarray(position), limits.maxInflatedBytes ?? MAX_BUFFER)]);
      },
    } as unknown as dicomParser.ParseDicomOptions);
  } catch (e) {
    if (e instanceof NeedMoreBytes || e instanceof DicomParseError) throw e;
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

  const transferSyntaxUID = trimUid(dataSet.string('x00020010'));
  if (!transferSyntaxUID) throw new DicomParseError('the meta header has no Transfer Syntax UID (0002,0010)');
  if (!isKnownTransferSyntax(transferSyntaxUID)) {
    throw new DicomParseError(`transfer syntax ${transferSyntaxUID} is not one this server knows`);
  }
  const sopInstanceUID = assertUid('SOPInstanceUID (0008,0018)', trimUid(dataSet.string('x00080018')));
  const mediaSop = trimUid(dataSet.string('x00020003'));
  if (mediaSop && mediaSop !== sopInstanceUID) {
    throw new DicomParseError(`MediaStorageSOPInstanceUID ${mediaSop} differs from SOPInstanceUID ${sopInstanceUID}`);
  }
  return {
    dataSet,
    transferSyntaxUID,
    sopClassUID: assertUid('SOPClassUID (0008,0016)', trimUid(dataSet.string('x00080016') ?? dataSet.string('x00020002'))),
    sopInstanceUID,
    studyInstanceUID: assertUid('StudyInstanceUID (0020,000D)', trimUid(dataSet.string('x0020000d'))),
    seriesInstanceUID: assertUid('SeriesInstanceUID (0020,000E)', trimUid(dataSet.string('x0020000e'))),
    pixelData,
    bytes: source,
    inflated,
  };
}

/** Thrown while parsing a prefix: the header continues past it. */
export class NeedMoreBytes extends Error {
  constructor(readonly atLeast: number) {
    super(`need at least ${atLeast} bytes`);
  }
}

function trimUid(value: string | undefined): string | undefined {
  return value?.replace(/[\0 ]+$/, '');
}

function inflate(deflated: Buffer, maxBytes: number): Buffer {
  try {
    return zlib.inflateRawSync(deflated, { maxOutputLength: maxBytes });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new InflateLimitExceeded(maxBytes);
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
