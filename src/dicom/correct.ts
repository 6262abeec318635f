import { encodedElement, rewriteExplicitLittleEndian, elementHeader, type Replacement } from './explicit-le.js';
import type { ParsedHeader } from './parse.js';
import { Tag, lookupTag } from './tags.js';
import { TransferSyntax } from './transfer-syntax.js';
import { fileMetaInformation, tagHeader, writeDataSet, type WriteElement } from './write.js';

/** A value the person uploading sets, as DICOM writes it (a date as YYYYMMDD, a name as Family^Given). */
export type Correction = { tag: string; value: string };

export class CorrectionRefused extends Error {}

/** The file corrected: its new beginning, and where in the file as sent the rest (its pixel data on) begins. */
export type CorrectedFile = { head: Buffer; restFrom: number; changed: string[] };

const ORIGINAL_ATTRIBUTES = '04000561';
const UNDEFINED = 0xffffffff;
/** Tag, VR, two reserved bytes and a 4-byte length: how pixel data begins in an explicit VR syntax. */
const LONG_HEADER = 12;
const MAX_MODIFYING_SYSTEM = 64;

/**
 * The file with the values the person set (the order's PatientID, name, accession number…), the values it had kept
 * in a new item of its Original Attributes Sequence (PS3.3 C.12.1.1.9) with when, by whom, and why (CORRECT): nothing
 * changes silently, and its UIDs stay. Everything else is kept byte for byte; pixel data is not touched. Undefined
 * when the file already holds every value. An Implicit VR file is written as Explicit VR Little Endian, the same
 * values; big endian and deflated files are refused, being too rare to rewrite safely here.
 */
export function correctFile(header: ParsedHeader, corrections: Correction[], modifiedBy: string, now: Date): CorrectedFile | undefined {
  const { dataSet, transferSyntaxUID } = header;
  if (header.inflated || transferSyntaxUID === TransferSyntax.ExplicitVRBigEndian) {
    throw new CorrectionRefused('its transfer syntax (deflated or big endian) cannot be corrected here; send it in Explicit VR Little Endian');
  }
  const implicit = transferSyntaxUID === TransferSyntax.ImplicitVRLittleEndian;
  const current = (tag: string) => (dataSet.string(`x${tag.toLowerCase()}`) ?? '').trim();
  const changes = corrections.filter((c) => current(c.tag) !== c.value);
  if (changes.length === 0) return undefined;

  const encode = characterSetFor(dataSet.string('x00080005') ?? '', changes);
  const replace: Replacement[] = changes.map((c) => ({ tag: c.tag, vr: vrOf(c.tag), value: padded(Buffer.from(c.value, encode.encoding)) }));
  if (encode.specificCharacterSet) replace.push({ tag: Tag.SpecificCharacterSet, vr: 'CS', value: padded(Buffer.from(encode.specificCharacterSet, 'latin1')) });
  const before: WriteElement[] = changes.map((c) => {
    const element = dataSet.elements[`x${c.tag.toLowerCase()}`];
    const value = element ? Buffer.from(dataSet.byteArray.subarray(element.dataOffset, element.dataOffset + element.length)) : Buffer.alloc(0);
    return { tag: c.tag, vr: element?.vr ?? vrOf(c.tag), value };
  });
  const item: WriteElement[] = [
    { tag: '04000550', vr: 'SQ', value: [before] },
    { tag: '04000562', vr: 'DT', value: dicomDateTime(now) },
    { tag: '04000563', vr: 'LO', value: `PACS-lite ${modifiedBy}`.slice(0, MAX_MODIFYING_SYSTEM) },
    { tag: '04000564', vr: 'LO', value: '' },
    { tag: '04000565', vr: 'CS', value: 'CORRECT' },
  ];
  // Items kept from earlier corrections, then this one.
  const options = { bigEndian: false, pixelRepresentation: dataSet.uint16('x00280103') ?? 0 };
  const earlier = dataSet.elements[`x${ORIGINAL_ATTRIBUTES}`] ? itemsOf(encodedElement(dataSet, ORIGINAL_ATTRIBUTES, options)) : Buffer.alloc(0);
  const added = Buffer.concat([tagHeader(0xfffe, 0xe000, UNDEFINED), writeDataSet(item, TransferSyntax.ExplicitVRLittleEndian), tagHeader(0xfffe, 0xe00d, 0)]);
  replace.push({ tag: ORIGINAL_ATTRIBUTES, vr: 'SQ', value: Buffer.concat([earlier, added]) });

  const outSyntax = implicit ? TransferSyntax.ExplicitVRLittleEndian : transferSyntaxUID;
  const meta = fileMetaInformation({ transferSyntaxUID: outSyntax, sopClassUID: header.sopClassUID, sopInstanceUID: header.sopInstanceUID });
  const body = rewriteExplicitLittleEndian(dataSet, { ...options, replace });
  const pixels = header.pixelData;
  if (!pixels) return { head: Buffer.concat([meta, body]), restFrom: header.size, changed: changes.map((c) => c.tag) };
  if (!implicit) return { head: Buffer.concat([meta, body]), restFrom: pixels.dataOffset - LONG_HEADER, changed: changes.map((c) => c.tag) };
  // Implicit VR: the pixel data's header is written again with its VR; anything after it would stay implicit.
  if (pixels.dataOffset + pixels.length !== header.size) throw new CorrectionRefused('it holds elements after its pixel data in Implicit VR; send it in Explicit VR Little Endian');
  const vr = (dataSet.uint16('x00280100') ?? 16) <= 8 ? 'OB' : 'OW';
  return { head: Buffer.concat([meta, body, elementHeader('7FE00010', vr, pixels.length)]), restFrom: pixels.dataOffset, changed: changes.map((c) => c.tag) };
}

/** The character set the new values can be written in: the file's, or UTF-8 where it had none (ASCII is UTF-8 too). */
function characterSetFor(declared: string, changes: Correction[]): { encoding: BufferEncoding; specificCharacterSet?: string } {
  const ascii = changes.every((c) => /^[\x20-\x7e]*$/.test(c.value));
  const terms = declared.split('\\').map((t) => t.trim());
  if (terms.includes('ISO_IR 192')) return { encoding: 'utf8' };
  if (ascii) return { encoding: 'latin1' };
  if (declared.trim() === '') return { encoding: 'utf8', specificCharacterSet: 'ISO_IR 192' };
  if (declared.trim() === 'ISO_IR 100' && changes.every((c) => /^[\x20-\x7e\xa0-\xff]*$/.test(c.value))) return { encoding: 'latin1' };
  throw new CorrectionRefused(`its character set (${declared.trim()}) cannot hold the corrected values; correct it in a tool that rewrites its text, or give the values in ASCII`);
}

function vrOf(tag: string): string {
  return lookupTag(tag)?.vr ?? 'LO';
}

function padded(value: Buffer): Buffer {
  return value.length % 2 ? Buffer.concat([value, Buffer.from(' ')]) : value;
}

/** A sequence element as explicit-le.ts writes it (undefined length): its items, without its header and delimiter. */
function itemsOf(element: Buffer): Buffer {
  return element.subarray(LONG_HEADER, element.length - 8);
}

/** DT in UTC (PS3.5 6.2): YYYYMMDDHHMMSS.FFFFFF+0000. */
function dicomDateTime(now: Date): string {
  const iso = now.toISOString();
  return `${iso.slice(0, 19).replace(/[-:T]/g, '')}.${iso.slice(20, 23)}000+0000`;
}
