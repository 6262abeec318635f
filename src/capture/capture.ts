import { randomBytes } from 'node:crypto';
import sharp from 'sharp';
import { TransferSyntax } from '../dicom/transfer-syntax.js';
import { newUid, writePart10, type WriteElement } from '../dicom/write.js';
import { NotAJpeg, readJpeg } from './jpeg.js';

/**
 * Photos and documents made into DICOM instances (issue 15), so that they are stored, searched and shown like any
 * other image. Photos are VL Photographic Images (modality XC): the IOD DICOM made for visible-light photographs of
 * patients, which viewers show as such, where Secondary Capture would say "converted from something else".
 * PDFs are Encapsulated PDF (modality DOC).
 */
export const VL_PHOTOGRAPHIC_IMAGE = '1.2.840.10008.5.1.4.1.1.77.1.4';
export const ENCAPSULATED_PDF = '1.2.840.10008.5.1.4.1.1.104.1';

export const CAPTURE_TYPES = ['image/jpeg', 'image/png', 'application/pdf'] as const;
export type CaptureType = (typeof CAPTURE_TYPES)[number];

/** A photo larger than this is refused before it is decoded: 50 megapixels is past any phone or clinical camera. */
export const MAX_PHOTO_PIXELS = 50_000_000;

/** Why a file cannot become an instance, for the person who sent it. */
export class CaptureRefused extends Error {}

/** Who and what the instance belongs to; text is written in UTF-8 (SpecificCharacterSet ISO_IR 192). */
export type CaptureContext = {
  patient: { id: string; name: string; birthDate: string; sex: string; issuer?: string };
  study: { uid: string; date: string; time: string; accessionNumber: string; description: string; id: string; referringPhysician: string };
  series: { uid: string; number: number; description: string; bodyPart: string };
  instanceNumber: number;
  sopInstanceUid: string;
  /** When this was made: ContentDate/Time of the instance. */
  now: Date;
};

/** UIDs under the clinic's root (PACS_UID_ROOT), or 2.25 UUID-derived ones (PS3.5 B.2) when it has none. */
export function uidMaker(root: string | undefined): () => string {
  if (!root) return newUid;
  // 96 random bits in decimal: 29 digits at most, so a root of up to 34 characters keeps a UID within 64.
  return () => `${root}.${BigInt(`0x${randomBytes(12).toString('hex')}`).toString(10).replace(/^0+(?=.)/, '')}`;
}

/** The Part 10 file of a photo or a PDF, checked to be what it claims. */
export async function captureInstance(file: Buffer, type: CaptureType, context: CaptureContext): Promise<Buffer> {
  if (file.length === 0) throw new CaptureRefused('the file is empty');
  return type === 'application/pdf' ? pdfInstance(file, context) : photoInstance(file, type, context);
}

async function photoInstance(file: Buffer, type: 'image/jpeg' | 'image/png', context: CaptureContext): Promise<Buffer> {
  const image = sharp(file, { failOn: 'error', limitInputPixels: MAX_PHOTO_PIXELS });
  const metadata = await image.metadata().catch((e: Error) => {
    // A JPEG's own markers say best what is wrong with it (cut short, no frame header).
    if (type === 'image/jpeg') readJpegOrRefuse(file);
    throw new CaptureRefused(`it is not a readable image (${e.message})`);
  });
  const format = metadata.format === 'jpeg' ? 'image/jpeg' : metadata.format === 'png' ? 'image/png' : undefined;
  if (format !== type) throw new CaptureRefused(`it was sent as ${type} but is ${metadata.format ? `a ${metadata.format.toUpperCase()} image` : 'not an image'}`);
  const jpeg = type === 'image/jpeg' ? readJpegOrRefuse(file) : undefined;
  // A baseline JPEG held upright goes in as it is; anything else is decoded once, losslessly kept as pixels.
  if (jpeg?.baseline && jpeg.orientation === 1 && (jpeg.components === 1 || jpeg.components === 3)) {
    // Decoded once to be sure it is whole: a JPEG cut short keeps its header and loses its picture.
    await image.raw().toBuffer().catch((e: Error) => {
      throw new CaptureRefused(`the JPEG does not decode (${e.message})`);
    });
    const photometric = jpeg.components === 1 ? 'MONOCHROME2' : jpeg.adobeTransform === 0 ? 'RGB' : jpeg.subsampled ? 'YBR_FULL_422' : 'YBR_FULL';
    const dataset = photoDataSet(context, { rows: jpeg.rows, columns: jpeg.columns, samples: jpeg.components, photometric, lossy: true });
    return writePart10(dataset, { transferSyntaxUID: TransferSyntax.JPEGBaseline, sopClassUID: VL_PHOTOGRAPHIC_IMAGE, sopInstanceUID: context.sopInstanceUid, frames: [jpeg.stripped] });
  }
  const gray = metadata.channels !== undefined && metadata.channels <= 2 && metadata.space === 'b-w';
  const decoded = await image
    .rotate() // upright, as the EXIF orientation says
    .flatten({ background: '#ffffff' })
    .toColourspace(gray ? 'b-w' : 'srgb')
    .raw({ depth: 'uchar' })
    .toBuffer({ resolveWithObject: true })
    .catch((e: Error) => {
      throw new CaptureRefused(`the image does not decode (${e.message})`);
    });
  const samples = decoded.info.channels;
  const dataset = photoDataSet(context, { rows: decoded.info.height, columns: decoded.info.width, samples, photometric: samples === 1 ? 'MONOCHROME2' : 'RGB', lossy: type === 'image/jpeg' });
  dataset.push({ tag: '7FE00010', vr: 'OB', value: decoded.data });
  return writePart10(dataset, { transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, sopClassUID: VL_PHOTOGRAPHIC_IMAGE, sopInstanceUID: context.sopInstanceUid });
}

function readJpegOrRefuse(file: Buffer) {
  try {
    return readJpeg(file);
  } catch (e) {
    if (e instanceof NotAJpeg) throw new CaptureRefused(`it is not a whole JPEG: ${e.message}`);
    throw e;
  }
}

function photoDataSet(context: CaptureContext, pixels: { rows: number; columns: number; samples: number; photometric: string; lossy: boolean }): WriteElement[] {
  return [
    ...common(context, VL_PHOTOGRAPHIC_IMAGE, 'XC'),
    { tag: '00080008', vr: 'CS', value: ['ORIGINAL', 'PRIMARY'] },
    { tag: '00200020', vr: 'CS', value: '' },
    { tag: '00280002', vr: 'US', value: pixels.samples },
    { tag: '00280004', vr: 'CS', value: pixels.photometric },
    ...(pixels.samples > 1 ? [{ tag: '00280006', vr: 'US', value: 0 }] : []),
    { tag: '00280010', vr: 'US', value: pixels.rows },
    { tag: '00280011', vr: 'US', value: pixels.columns },
    { tag: '00280100', vr: 'US', value: 8 },
    { tag: '00280101', vr: 'US', value: 8 },
    { tag: '00280102', vr: 'US', value: 7 },
    { tag: '00280103', vr: 'US', value: 0 },
    // A camera's JPEG was lossy before it reached us (PS3.3 C.7.6.1.1.5); nothing is lost here.
    { tag: '00282110', vr: 'CS', value: pixels.lossy ? '01' : '00' },
    ...(pixels.lossy ? [{ tag: '00282114', vr: 'CS', value: 'ISO_10918_1' }] : []),
    // Acquisition Context (Type 2): empty, as nothing is known of how the photo was taken.
    { tag: '00400555', vr: 'SQ', value: [] },
  ];
}

function pdfInstance(file: Buffer, context: CaptureContext): Buffer {
  if (!file.subarray(0, 1024).toString('latin1').includes('%PDF-')) throw new CaptureRefused('it was sent as application/pdf but does not begin as a PDF does (%PDF-)');
  if (!file.subarray(-1024).toString('latin1').includes('%%EOF')) throw new CaptureRefused('the PDF is cut short: it has no end-of-file marker (%%EOF)');
  const dataset: WriteElement[] = [
    ...common(context, ENCAPSULATED_PDF, 'DOC'),
    // SC Equipment (Type 1): a document converted at a workstation.
    { tag: '00080064', vr: 'CS', value: 'WSD' },
    { tag: '0008002A', vr: 'DT', value: dicomDateTime(context.now) },
    { tag: '00280301', vr: 'CS', value: 'YES' },
    { tag: '00420010', vr: 'ST', value: context.series.description || 'Document' },
    { tag: '0040A043', vr: 'SQ', value: [] },
    { tag: '00420012', vr: 'LO', value: 'application/pdf' },
    // Its length before the padding to an even length (PS3.3 C.24.2.1).
    { tag: '00420015', vr: 'UL', value: file.length },
    { tag: '00420011', vr: 'OB', value: file },
  ];
  return writePart10(dataset, { transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, sopClassUID: ENCAPSULATED_PDF, sopInstanceUID: context.sopInstanceUid });
}

/** Patient, General Study, the series, General Equipment, the instance's number and time, SOP Common. */
function common(c: CaptureContext, sopClassUid: string, modality: string): WriteElement[] {
  const [date, time] = [dicomDate(c.now), dicomTime(c.now)];
  return [
    { tag: '00080005', vr: 'CS', value: 'ISO_IR 192' },
    { tag: '00080016', vr: 'UI', value: sopClassUid },
    { tag: '00080018', vr: 'UI', value: c.sopInstanceUid },
    { tag: '00080020', vr: 'DA', value: c.study.date },
    { tag: '00080023', vr: 'DA', value: date },
    { tag: '00080030', vr: 'TM', value: c.study.time },
    { tag: '00080033', vr: 'TM', value: time },
    { tag: '00080050', vr: 'SH', value: c.study.accessionNumber },
    { tag: '00080060', vr: 'CS', value: modality },
    { tag: '00080070', vr: 'LO', value: '' },
    { tag: '00080090', vr: 'PN', value: c.study.referringPhysician },
    { tag: '00081030', vr: 'LO', value: c.study.description },
    { tag: '0008103E', vr: 'LO', value: c.series.description },
    { tag: '00100010', vr: 'PN', value: c.patient.name },
    { tag: '00100020', vr: 'LO', value: c.patient.id },
    ...(c.patient.issuer ? [{ tag: '00100021', vr: 'LO', value: c.patient.issuer }] : []),
    { tag: '00100030', vr: 'DA', value: c.patient.birthDate },
    { tag: '00100040', vr: 'CS', value: c.patient.sex },
    ...(c.series.bodyPart ? [{ tag: '00180015', vr: 'CS', value: c.series.bodyPart }] : []),
    { tag: '0020000D', vr: 'UI', value: c.study.uid },
    { tag: '0020000E', vr: 'UI', value: c.series.uid },
    { tag: '00200010', vr: 'SH', value: c.study.id },
    { tag: '00200011', vr: 'IS', value: String(c.series.number) },
    { tag: '00200013', vr: 'IS', value: String(c.instanceNumber) },
  ];
}

const pad2 = (n: number) => String(n).padStart(2, '0');
export function dicomDate(d: Date): string {
  return `${d.getFullYear()}${pad2(d.getMonth() + 1)}${pad2(d.getDate())}`;
}
export function dicomTime(d: Date): string {
  return `${pad2(d.getHours())}${pad2(d.getMinutes())}${pad2(d.getSeconds())}`;
}
function dicomDateTime(d: Date): string {
  return `${dicomDate(d)}${dicomTime(d)}`;
}
