import { decodeText } from './charset.js';
import type { DataSet, Element } from './parse.js';
import { Tag, isPrivateCreator, isPrivateTag, lookupTag } from './tags.js';

/** PS3.18 F.2 DICOM JSON: one attribute. */
export type JsonAttribute = {
  vr: string;
  Value?: unknown[];
  InlineBinary?: string;
  BulkDataURI?: string;
};
export type DicomJson = Record<string, JsonAttribute>;

const PIXEL_DATA_TAGS: ReadonlySet<string> = new Set([Tag.PixelData, Tag.FloatPixelData, Tag.DoubleFloatPixelData]);
const BINARY_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'UN']);
const SINGLE_VALUED_TEXT = new Set(['LT', 'ST', 'UT', 'UR']);
/** VRs whose bytes are never in the Specific Character Set (PS3.5 6.1.2.3). */
const DEFAULT_REPERTOIRE_VRS = new Set(['AE', 'AS', 'CS', 'DA', 'DS', 'DT', 'IS', 'TM', 'UI', 'UR']);
const NUMBER_READERS: Record<string, [bytes: number, read: (ds: DataSet, tag: string, i: number) => number | undefined]> = {
  US: [2, (ds, t, i) => ds.uint16(t, i)],
  SS: [2, (ds, t, i) => ds.int16(t, i)],
  UL: [4, (ds, t, i) => ds.uint32(t, i)],
  SL: [4, (ds, t, i) => ds.int32(t, i)],
  FL: [4, (ds, t, i) => ds.float(t, i)],
  FD: [8, (ds, t, i) => ds.double(t, i)],
};
/** Binary values up to this size travel inline; larger ones by BulkDataURI (DESIGN decision 3). */
const INLINE_BINARY_LIMIT = 1024;

/**
 * Where each value given by BulkDataURI lies, by its path after `/bulkdata/` (e.g. `60003000` or `00540016/0/00181074`):
 * [offset, length] in the bytes the data set was parsed from (the file, or its meta information and inflated data set).
 * The top-level pixel data is not among them: its frames have ranges of their own (frames.ts).
 */
export type BulkDataRanges = Record<string, [offset: number, length: number]>;

export type JsonOptions = {
  /** Relative URI prefix of the instance: bulk data becomes `${bulkDataBase}/bulkdata/<tag path>`. */
  bulkDataBase: string;
  /** Filled with where each bulk data value lies, so that reading it later is a ranged read (DESIGN decision 3). */
  bulkDataRanges?: BulkDataRanges;
};

/** Converts a parsed data set to DICOM JSON; pixel data becomes a BulkDataURI, group 0002 is left out. */
export function toDicomJson(dataSet: DataSet, options: JsonOptions): DicomJson {
  const base = options.bulkDataBase + '/bulkdata';
  const ranges = options.bulkDataRanges;
  const found: BulkDataFound | undefined = ranges && ((path, element) => {
    const relative = path.slice(base.length + 1);
    if (!PIXEL_DATA_TAGS.has(relative)) ranges[relative] = [element.dataOffset, element.length];
  });
  return convert(dataSet, undefined, base, found);
}

type BulkDataFound = (path: string, element: Element) => void;

function convert(dataSet: DataSet, inheritedCharset: string[] | undefined, path: string, found?: BulkDataFound): DicomJson {
  const charset = readCharset(dataSet) ?? inheritedCharset;
  const out: DicomJson = {};
  const tags = Object.keys(dataSet.elements).sort();
  for (const key of tags) {
    const element = dataSet.elements[key]!;
    const tag = key.slice(1).toUpperCase();
    if (tag.startsWith('0002') || tag.endsWith('0000') || tag.startsWith('FFFE')) continue;
    const vr = element.vr === 'UN' ? knownVrOfUn(tag, element) : (element.vr ?? vrFromDictionary(tag, element));
    out[tag] = convertElement(dataSet, element, tag, vr, charset, `${path}/${tag}`, found);
  }
  return out;
}

function convertElement(
  dataSet: DataSet,
  element: Element,
  tag: string,
  vr: string,
  charset: string[] | undefined,
  path: string,
  found: BulkDataFound | undefined,
): JsonAttribute {
  if (vr === 'SQ' || element.items) {
    const items = element.items ?? [];
    return { vr: 'SQ', Value: items.map((item, i) => (item.dataSet ? convert(item.dataSet, charset, `${path}/${i}`, found) : {})) };
  }
  if (PIXEL_DATA_TAGS.has(tag) || (BINARY_VRS.has(vr) && (element.length > INLINE_BINARY_LIMIT || element.hadUndefinedLength))) {
    found?.(path, element);
    return { vr, BulkDataURI: path };
  }
  if (element.length === 0) return { vr };
  const bytes = (dataSet.byteArray as Buffer).subarray(element.dataOffset, element.dataOffset + element.length);
  if (BINARY_VRS.has(vr)) return { vr, InlineBinary: Buffer.from(bytes).toString('base64') };

  const numeric = NUMBER_READERS[vr];
  if (numeric) {
    const count = Math.floor(element.length / numeric[0]);
    return { vr, Value: Array.from({ length: count }, (_, i) => numeric[1](dataSet, element.tag, i)) };
  }
  if (vr === 'AT') {
    const count = Math.floor(element.length / 4);
    return {
      vr,
      Value: Array.from({ length: count }, (_, i) => {
        const group = dataSet.uint16(element.tag, i * 2)!;
        const elem = dataSet.uint16(element.tag, i * 2 + 1)!;
        return (group.toString(16).padStart(4, '0') + elem.toString(16).padStart(4, '0')).toUpperCase();
      }),
    };
  }
  if (vr === 'SV' || vr === 'UV') {
    const count = Math.floor(element.length / 8);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const littleEndian = !isBigEndian(dataSet);
    return {
      vr,
      Value: Array.from({ length: count }, (_, i) => {
        const big = vr === 'SV' ? view.getBigInt64(i * 8, littleEndian) : view.getBigUint64(i * 8, littleEndian);
        return Number.isSafeInteger(Number(big)) ? Number(big) : big.toString();
      }),
    };
  }

  const text = DEFAULT_REPERTOIRE_VRS.has(vr) ? bytes.toString('latin1') : decodeText(bytes, charset, vr);
  if (SINGLE_VALUED_TEXT.has(vr)) return { vr, Value: [text.replace(/[\0 ]+$/, '')] };
  const values = text.split('\\').map((v) => v.replace(/^[\0 ]+|[\0 ]+$/g, ''));
  if (vr === 'PN') return { vr, Value: values.map(personNameValue) };
  if (vr === 'DS' || vr === 'IS') {
    return { vr, Value: values.map((v) => (v === '' ? null : Number.isFinite(Number(v)) ? Number(v) : v)) };
  }
  return { vr, Value: values.map((v) => (v === '' ? null : v)) };
}

function personNameValue(value: string): Record<string, string> | null {
  if (value === '') return null;
  const [alphabetic, ideographic, phonetic] = value.split('=');
  const name: Record<string, string> = {};
  if (alphabetic) name.Alphabetic = alphabetic.replace(/ +$/, '');
  if (ideographic) name.Ideographic = ideographic.replace(/ +$/, '');
  if (phonetic) name.Phonetic = phonetic.replace(/ +$/, '');
  return name;
}

function readCharset(dataSet: DataSet): string[] | undefined {
  const element = dataSet.elements['x00080005'];
  if (!element || element.length === 0) return undefined;
  const raw = (dataSet.byteArray as Buffer).toString('latin1', element.dataOffset, element.dataOffset + element.length);
  return raw.split('\\').map((s) => s.trim());
}

function vrFromDictionary(tag: string, element: Element): string {
  const entry = lookupTag(tag);
  if (entry) return entry.vr;
  if (isPrivateCreator(tag)) return 'LO';
  return element.hadUndefinedLength ? 'SQ' : 'UN';
}

/**
 * PS3.5 6.2.2: a value sent as UN (a writer that did not know the VR, or implicit data passed on as explicit) is read
 * with the dictionary's VR when the tag is a standard one, its bytes being in Implicit VR Little Endian. A sequence
 * whose items the parser did not find stays UN rather than become an empty one.
 */
function knownVrOfUn(tag: string, element: Element): string {
  const known = isPrivateTag(tag) ? undefined : lookupTag(tag)?.vr;
  if (!known || (known === 'SQ' && !element.items)) return 'UN';
  return known;
}

function isBigEndian(dataSet: DataSet): boolean {
  return (dataSet.byteArrayParser as unknown as { readUint16(b: Uint8Array, p: number): number }).readUint16(
    new Uint8Array([1, 0]),
    0,
  ) !== 1;
}

/** The first value of an attribute as text; person names as their Alphabetic group. */
export function firstString(json: DicomJson, tag: string): string | undefined {
  const value = json[tag]?.Value?.[0];
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'object') return (value as Record<string, string>).Alphabetic;
  return String(value);
}
