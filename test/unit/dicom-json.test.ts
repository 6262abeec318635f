import { describe, expect, it } from 'vitest';
import { toDicomJson } from '../../src/dicom/json.js';
import { DicomParseError, parsePart10 } from '../../src/dicom/parse.js';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { writePart10, type WriteElement } from '../../src/dicom/write.js';

const SOP = { sopClassUID: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUID: '1.2.3.4.5' };
const REQUIRED: WriteElement[] = [
  { tag: '00080016', vr: 'UI', value: SOP.sopClassUID },
  { tag: '00080018', vr: 'UI', value: SOP.sopInstanceUID },
  { tag: '0020000D', vr: 'UI', value: '1.2.3' },
  { tag: '0020000E', vr: 'UI', value: '1.2.3.4' },
];

function roundTrip(elements: WriteElement[], transferSyntaxUID: string) {
  const file = writePart10([...REQUIRED, ...elements], { ...SOP, transferSyntaxUID });
  return toDicomJson(parsePart10(file).dataSet, { bulkDataBase: 'studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5' });
}

describe('DICOM JSON (PS3.18 F.2)', () => {
  for (const ts of [TransferSyntax.ExplicitVRLittleEndian, TransferSyntax.ImplicitVRLittleEndian, TransferSyntax.ExplicitVRBigEndian]) {
    it(`converts values by VR in ${ts}`, () => {
      const json = roundTrip(
        [
          { tag: '00080005', vr: 'CS', value: 'ISO_IR 192' },
          { tag: '00100010', vr: 'PN', value: 'Müller^Jürgen=ミュラー^ユルゲン' },
          { tag: '00181050', vr: 'DS', value: ['0.5', '-1.25e2'] },
          { tag: '00200013', vr: 'IS', value: '42' },
          { tag: '00280010', vr: 'US', value: 512 },
          { tag: '00281052', vr: 'DS', value: '-1024' },
          { tag: '00089215', vr: 'SQ', value: [[{ tag: '00080100', vr: 'SH', value: '121311' }]] },
          { tag: '00091010', vr: 'LO', value: 'private' },
          { tag: '00420011', vr: 'OB', value: Buffer.alloc(4096, 7) },
          { tag: '00280009', vr: 'AT', value: Buffer.from(ts === TransferSyntax.ExplicitVRBigEndian ? [0x00, 0x54, 0x00, 0x80] : [0x54, 0x00, 0x80, 0x00]) },
        ],
        ts,
      );
      expect(json['00100010']).toEqual({ vr: 'PN', Value: [{ Alphabetic: 'Müller^Jürgen', Ideographic: 'ミュラー^ユルゲン' }] });
      expect(json['00181050']).toEqual({ vr: 'DS', Value: [0.5, -125] });
      expect(json['00200013']).toEqual({ vr: 'IS', Value: [42] });
      expect(json['00280010']).toEqual({ vr: 'US', Value: [512] });
      expect(json['00089215']!.Value).toEqual([{ '00080100': { vr: 'SH', Value: ['121311'] } }]);
      expect(json['00420011']!.BulkDataURI).toBe('studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5/bulkdata/00420011');
      expect(json['00280009']).toEqual({ vr: 'AT', Value: ['00540080'] });
      expect(json['00020010']).toBeUndefined();
    });
  }

  it('records where each bulk data value lies, nested ones included, and leaves the pixel data to its frames', () => {
    const overlay = Buffer.alloc(8192, 0x5a);
    const nested = Buffer.alloc(2048, 0xc3);
    const small = Buffer.alloc(16, 1);
    const privateValue = Buffer.alloc(3000, 0x11);
    const file = writePart10(
      [
        ...REQUIRED,
        { tag: '00091010', vr: 'LO', value: 'ACME' },
        { tag: '00091011', vr: 'OB', value: privateValue },
        { tag: '00540016', vr: 'SQ', value: [[{ tag: '00181074', vr: 'OB', value: small }], [{ tag: '00181075', vr: 'OW', value: nested }]] },
        { tag: '60003000', vr: 'OW', value: overlay },
      ],
      { ...SOP, transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, frames: [Buffer.alloc(64, 9)] },
    );
    const ranges = {};
    const json = toDicomJson(parsePart10(file).dataSet, { bulkDataBase: 'base', bulkDataRanges: ranges });
    expect(json['7FE00010']!.BulkDataURI).toBe('base/bulkdata/7FE00010');
    expect(json['00540016']!.Value![1]).toEqual({ '00181075': { vr: 'OW', BulkDataURI: 'base/bulkdata/00540016/1/00181075' } });
    expect(Object.keys(ranges).sort()).toEqual(['00091011', '00540016/1/00181075', '60003000']);
    const at = (path: string) => {
      const [offset, length] = (ranges as Record<string, [number, number]>)[path]!;
      return file.subarray(offset, offset + length);
    };
    expect(at('60003000').equals(overlay)).toBe(true);
    expect(at('00091011').equals(privateValue)).toBe(true);
    expect(at('00540016/1/00181075').equals(nested)).toBe(true);
  });

  it('refuses an element that claims more bytes than the file holds', () => {
    const file = writePart10([...REQUIRED, { tag: '00081030', vr: 'LO', value: 'CHEST' }], { ...SOP, transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian });
    const at = file.indexOf(Buffer.from('CHEST'));
    file.writeUInt16LE(0x7ff0, at - 2);
    expect(() => parsePart10(file)).toThrow(DicomParseError);
    expect(() => parsePart10(file)).toThrow(/past the end of the file/);
  });

  it('refuses a file without the Part 10 prefix', () => {
    expect(() => parsePart10(Buffer.from('hello world'.repeat(20)))).toThrow(/preamble/);
  });
});
