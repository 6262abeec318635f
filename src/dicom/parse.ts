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

const PIXEL_TAGS = ['x7fe00010', 'x7fe00008', 'x7fe00009'] as const;
const MAX_NESTING = 64;

/**
 * Parses a Part 10 file up to its pixel data (PS3.10 7.1). `bytes` may be a prefix of a larger file
 * of `fileSize` bytes: NeedMoreBytes asks the caller for a longer prefix.
 */
export function parsePart10(bytes: Buffer, fileSize = bytes.length): ParsedHeader {
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
        const body = zlib.inflateRawSync(whole.subarray(position), { maxOutputLength: 4 * 1024 ** 3 });
        return Buffer.concat([whole.subarray(0, position), body]);
      },
    } as unknown as dicomParser.ParseDicomOptions);
  } catch (e) {
    if (e instanceof NeedMoreBytes) throw e;
    if (partial) throw new NeedMoreBytes(bytes.length * 2);
    throw new DicomParseError(`unreadable DICOM data set: ${describeParserError(e)}`);
  }
  const source = dataSet.byteArray as Buffer;
  checkBounds(dataSet, source.length, partial, 0);

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

/** dicom-parser trusts declared lengths; an element that claims more than the file holds is refused here. */
function checkBounds(dataSet: DataSet, end: number, partial: boolean, depth: number): void {
  if (depth > MAX_NESTING) throw new DicomParseError(`sequences are nested more than ${MAX_NESTING} deep`);
  for (const element of Object.values(dataSet.elements)) {
    // Pixel data is the one element allowed past a prefix; frameRanges checks it against the whole file.
    if (depth === 0 && (PIXEL_TAGS as readonly string[]).includes(element.tag)) continue;
    const declaredEnd = element.dataOffset + (element.hadUndefinedLength ? 0 : element.length);
    if (declaredEnd > end) {
      if (partial) throw new NeedMoreBytes(Math.max(end * 2, declaredEnd + 1024));
      throw new DicomParseError(
        `element (${element.tag.slice(1, 5)},${element.tag.slice(5)}) declares ${element.length} bytes at offset ${element.dataOffset}, past the end of the file (${end} bytes)`,
      );
    }
    for (const item of element.items ?? []) if (item.dataSet) checkBounds(item.dataSet, end, partial, depth + 1);
  }
}

function describeParserError(e: unknown): string {
  const inner = (e as { exception?: unknown })?.exception ?? e;
  if (inner instanceof RangeError) return 'structure too deeply nested';
  const text = inner instanceof Error ? inner.message : String(inner);
  if (/buffer overrun|past end of buffer|beyond the end/i.test(text)) return 'an element declares a length past the end of the file (truncated or corrupt)';
  return text.replace(/^dicomParser[.:]\w+: /, '').slice(0, 200);
}

export { TransferSyntax };
