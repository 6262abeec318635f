import type { DicomJson, JsonAttribute } from '../dicom/json.js';
import { Tag } from '../dicom/tags.js';
import { RenderError, type PaletteLut, type PixelModule, type VoiFunction } from './types.js';

/** Image Pixel, Modality LUT and VOI LUT attributes read here (PS3.3 C.7.6.3, C.11.1, C.11.2), keyword → tag. */
const PixelTag = {
  SamplesPerPixel: Tag.SamplesPerPixel,
  PhotometricInterpretation: '00280004',
  PlanarConfiguration: '00280006',
  NumberOfFrames: Tag.NumberOfFrames,
  Rows: Tag.Rows,
  Columns: Tag.Columns,
  BitsAllocated: Tag.BitsAllocated,
  BitsStored: '00280101',
  HighBit: '00280102',
  PixelRepresentation: '00280103',
  WindowCenter: '00281050',
  WindowWidth: '00281051',
  RescaleIntercept: '00281052',
  RescaleSlope: '00281053',
  VOILUTFunction: '00281056',
  RedPaletteColorLookupTableDescriptor: '00281101',
  GreenPaletteColorLookupTableDescriptor: '00281102',
  BluePaletteColorLookupTableDescriptor: '00281103',
  RedPaletteColorLookupTableData: '00281201',
  GreenPaletteColorLookupTableData: '00281202',
  BluePaletteColorLookupTableData: '00281203',
  SegmentedRedPaletteColorLookupTableData: '00281221',
  SegmentedGreenPaletteColorLookupTableData: '00281222',
  SegmentedBluePaletteColorLookupTableData: '00281223',
} as const;
type Keyword = keyof typeof PixelTag;

const MONOCHROME = new Set(['MONOCHROME1', 'MONOCHROME2']);
/** Three-sample models we can turn into RGB (PS3.3 C.7.6.3.1.2); the retired ARGB, CMYK and HSV are not among them. */
const COLOUR = new Set(['RGB', 'YBR_FULL', 'YBR_FULL_422', 'YBR_PARTIAL_422', 'YBR_PARTIAL_420', 'YBR_ICT', 'YBR_RCT']);
const VOI_FUNCTIONS = new Set<VoiFunction>(['LINEAR', 'LINEAR_EXACT', 'SIGMOID']);

/** "Rows (0028,0010)": how a reason names an attribute, so a person can find it in a dump. */
function named(keyword: Keyword): string {
  const t = PixelTag[keyword];
  return `${keyword} (${t.slice(0, 4)},${t.slice(4)})`;
}

function incoherent(message: string): never {
  throw new RenderError(422, message);
}

/** All values of a numeric attribute (US, SS, IS, DS…); DS/IS may arrive as text from lenient writers. */
function numbers(json: DicomJson, keyword: Keyword): number[] {
  const values = json[PixelTag[keyword]]?.Value ?? [];
  return values.map((v) => {
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
    if (!Number.isFinite(n)) incoherent(`${named(keyword)} holds ${JSON.stringify(v)}, which is not a number`);
    return n;
  });
}

function integer(json: DicomJson, keyword: Keyword, fallback?: number): number {
  const value = numbers(json, keyword)[0];
  if (value === undefined) {
    if (fallback === undefined) incoherent(`${named(keyword)} is missing; the pixels cannot be read without it`);
    return fallback;
  }
  if (!Number.isInteger(value)) incoherent(`${named(keyword)} is ${value}, not an integer`);
  return value;
}

function text(json: DicomJson, keyword: Keyword): string | undefined {
  const value = json[PixelTag[keyword]]?.Value?.[0];
  return typeof value === 'string' && value.trim() !== '' ? value.trim().toUpperCase() : undefined;
}

/**
 * The pixel module of a stored instance, checked for coherence before any pixel is touched. Type 1 attributes
 * with one sensible value are defaulted (SamplesPerPixel from the photometric interpretation, BitsStored =
 * BitsAllocated, HighBit = BitsStored − 1, PixelRepresentation 0, PlanarConfiguration 0, one frame);
 * Rows, Columns, BitsAllocated and PhotometricInterpretation are required.
 * Throws RenderError 422 naming the attribute at fault, or 501 for what we do not render.
 */
export async function pixelModuleOf(json: DicomJson, readBulk: (uri: string) => Promise<Buffer>): Promise<PixelModule> {
  const rows = integer(json, 'Rows');
  const columns = integer(json, 'Columns');
  if (rows < 1) incoherent(`${named('Rows')} is ${rows}: the image has no pixels`);
  if (columns < 1) incoherent(`${named('Columns')} is ${columns}: the image has no pixels`);

  const photometric = text(json, 'PhotometricInterpretation') ?? incoherent(`${named('PhotometricInterpretation')} is missing`);
  const grey = MONOCHROME.has(photometric) || photometric === 'PALETTE COLOR';
  if (!grey && !COLOUR.has(photometric)) {
    throw new RenderError(501, `${named('PhotometricInterpretation')} ${photometric} is not rendered (MONOCHROME1/2, PALETTE COLOR, RGB and YBR are)`);
  }
  const samplesPerPixel = integer(json, 'SamplesPerPixel', grey ? 1 : 3);
  if (samplesPerPixel !== (grey ? 1 : 3)) {
    incoherent(`${named('SamplesPerPixel')} is ${samplesPerPixel} but ${photometric} has ${grey ? 1 : 3} sample(s) per pixel`);
  }

  const bitsAllocated = integer(json, 'BitsAllocated');
  if (bitsAllocated < 1) incoherent(`${named('BitsAllocated')} is ${bitsAllocated}`);
  if (bitsAllocated !== 1 && bitsAllocated !== 8 && bitsAllocated !== 16 && bitsAllocated !== 32) {
    throw new RenderError(501, `${named('BitsAllocated')} ${bitsAllocated} is not rendered (1, 8, 16 or 32 are)`);
  }
  const bitsStored = integer(json, 'BitsStored', bitsAllocated);
  if (bitsStored < 1 || bitsStored > bitsAllocated) {
    incoherent(`${named('BitsStored')} is ${bitsStored} but ${named('BitsAllocated')} is ${bitsAllocated}`);
  }
  const highBit = integer(json, 'HighBit', bitsStored - 1);
  if (highBit < bitsStored - 1 || highBit > bitsAllocated - 1) {
    incoherent(`${named('HighBit')} is ${highBit}: with ${bitsStored} bits stored in ${bitsAllocated} it must lie between ${bitsStored - 1} and ${bitsAllocated - 1}`);
  }
  const pixelRepresentation = integer(json, 'PixelRepresentation', 0);
  if (pixelRepresentation !== 0 && pixelRepresentation !== 1) incoherent(`${named('PixelRepresentation')} is ${pixelRepresentation}, not 0 or 1`);
  const planarConfiguration = samplesPerPixel === 1 ? 0 : integer(json, 'PlanarConfiguration', 0);
  if (planarConfiguration !== 0 && planarConfiguration !== 1) incoherent(`${named('PlanarConfiguration')} is ${planarConfiguration}, not 0 or 1`);
  const numberOfFrames = integer(json, 'NumberOfFrames', 1);
  if (numberOfFrames < 1) incoherent(`${named('NumberOfFrames')} is ${numberOfFrames}`);

  if (bitsAllocated === 1 && !MONOCHROME.has(photometric)) incoherent(`${named('BitsAllocated')} is 1 but ${photometric} needs 8 or 16`);
  if (bitsAllocated === 32 && photometric !== 'MONOCHROME1' && photometric !== 'MONOCHROME2') {
    throw new RenderError(501, `${named('BitsAllocated')} 32 is rendered for MONOCHROME1/2 only, not ${photometric}`);
  }

  const rescaleSlope = numbers(json, 'RescaleSlope')[0] ?? 1;
  const rescaleIntercept = numbers(json, 'RescaleIntercept')[0] ?? 0;
  if (rescaleSlope === 0) incoherent(`${named('RescaleSlope')} is 0: every pixel would have the same value`);

  const fn = text(json, 'VOILUTFunction');
  const voiFunction: VoiFunction = fn && VOI_FUNCTIONS.has(fn as VoiFunction) ? (fn as VoiFunction) : 'LINEAR';
  const centers = numbers(json, 'WindowCenter');
  const widths = numbers(json, 'WindowWidth');
  const windows: PixelModule['windows'] = [];
  // A window the function cannot use (PS3.3 C.11.2.1.2.1: LINEAR needs width ≥ 1) is skipped, not fatal: the next one, or min/max, still shows the image.
  for (let i = 0; i < Math.min(centers.length, widths.length); i++) {
    const width = widths[i]!;
    if (voiFunction === 'LINEAR' ? width >= 1 : width > 0) windows.push({ center: centers[i]!, width });
  }

  const module: PixelModule = {
    rows,
    columns,
    samplesPerPixel,
    bitsAllocated,
    bitsStored,
    highBit,
    pixelRepresentation,
    photometric,
    planarConfiguration,
    numberOfFrames,
    rescaleSlope,
    rescaleIntercept,
    windows,
    voiFunction,
  };
  if (photometric === 'PALETTE COLOR') {
    if (bitsAllocated !== 8 && bitsAllocated !== 16) incoherent(`${named('BitsAllocated')} is ${bitsAllocated} but PALETTE COLOR needs 8 or 16`);
    const [red, green, blue] = await Promise.all(
      (['Red', 'Green', 'Blue'] as const).map((colour) => paletteLut(json, colour, pixelRepresentation, readBulk)),
    );
    module.palette = { red: red!, green: green!, blue: blue! };
  }
  return module;
}

/** One channel of a palette (PS3.3 C.7.6.3.1.5 descriptor, C.7.6.3.1.6 data). */
async function paletteLut(
  json: DicomJson,
  colour: 'Red' | 'Green' | 'Blue',
  pixelRepresentation: 0 | 1,
  readBulk: (uri: string) => Promise<Buffer>,
): Promise<PaletteLut> {
  const descriptorKeyword = `${colour}PaletteColorLookupTableDescriptor` as const;
  const dataKeyword = `${colour}PaletteColorLookupTableData` as const;
  const descriptor = numbers(json, descriptorKeyword);
  if (descriptor.length < 3) incoherent(`${named(descriptorKeyword)} must hold 3 values (entries, first mapped value, bits), it holds ${descriptor.length}`);
  // US or SS: 0 entries means 65536, and the first mapped value follows the pixel representation.
  const entries = descriptor[0] === 0 ? 65536 : (descriptor[0]! + 65536) % 65536;
  const rawFirst = descriptor[1]!;
  const firstMapped = pixelRepresentation === 1 ? (rawFirst > 32767 ? rawFirst - 65536 : rawFirst) : rawFirst < 0 ? rawFirst + 65536 : rawFirst;
  const bits = descriptor[2]!;
  if (bits !== 8 && bits !== 16) incoherent(`${named(descriptorKeyword)} gives ${bits} bits per entry; 8 or 16 are allowed`);

  const attribute = json[PixelTag[dataKeyword]];
  if (!attribute?.InlineBinary && !attribute?.BulkDataURI) {
    const segmented = json[PixelTag[`Segmented${colour}PaletteColorLookupTableData`]];
    if (segmented) throw new RenderError(501, `segmented palettes (${named(`Segmented${colour}PaletteColorLookupTableData`)}) are not rendered`);
    incoherent(`${named(dataKeyword)} is missing or empty`);
  }
  const bytes = await binaryOf(attribute, readBulk);
  return lutFromBytes(bytes, entries, firstMapped, bits, named(dataKeyword));
}

async function binaryOf(attribute: JsonAttribute, readBulk: (uri: string) => Promise<Buffer>): Promise<Buffer> {
  if (attribute.InlineBinary) return Buffer.from(attribute.InlineBinary, 'base64');
  return readBulk(attribute.BulkDataURI!);
}

/**
 * LUT data is OW, little endian as DICOM JSON carries it. 8-bit entries are packed two to a word
 * ("equivalent to 8 bits allocated", C.7.6.3.1.5); writers that give each 8-bit entry its own word are read
 * too, as dcmtk does, and taken as 16-bit when their high bytes carry information.
 */
function lutFromBytes(bytes: Buffer, entries: number, firstMapped: number, bits: 8 | 16, name: string): PaletteLut {
  const data = new Uint16Array(entries);
  if (bytes.length >= entries * 2) {
    for (let i = 0; i < entries; i++) data[i] = bytes.readUInt16LE(i * 2);
    if (bits === 8) {
      const wide = data.some((v) => v >> 8 !== 0 && v >> 8 !== (v & 0xff));
      if (wide) return { entries, firstMapped, bits: 16, data };
      for (let i = 0; i < entries; i++) data[i] = data[i]! & 0xff;
    }
    return { entries, firstMapped, bits, data };
  }
  if (bytes.length >= entries) {
    for (let i = 0; i < entries; i++) data[i] = bytes[i]!;
    return { entries, firstMapped, bits: 8, data };
  }
  incoherent(`${name} holds ${bytes.length} bytes, too few for ${entries} entries of ${bits} bits`);
}
