import { describe, expect, it, vi } from 'vitest';
import type { DicomJson } from '../../src/dicom/json.js';
import { pixelModuleOf } from '../../src/render/pixel-module.js';
import { RenderError } from '../../src/render/types.js';

const noBulk = async (uri: string): Promise<Buffer> => {
  throw new Error(`unexpected bulk data read: ${uri}`);
};

/** A 512×512 CT slice as the index stores it (DICOM JSON, PS3.18 F.2). */
function ct(overrides: DicomJson = {}, remove: string[] = []): DicomJson {
  const json: DicomJson = {
    '00280002': { vr: 'US', Value: [1] },
    '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
    '00280010': { vr: 'US', Value: [512] },
    '00280011': { vr: 'US', Value: [512] },
    '00280100': { vr: 'US', Value: [16] },
    '00280101': { vr: 'US', Value: [12] },
    '00280102': { vr: 'US', Value: [11] },
    '00280103': { vr: 'US', Value: [0] },
    ...overrides,
  };
  for (const tag of remove) delete json[tag];
  return json;
}

async function refusal(json: DicomJson, readBulk = noBulk): Promise<RenderError> {
  const error = await pixelModuleOf(json, readBulk).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RenderError);
  return error as RenderError;
}

function palette(colour: 1 | 2 | 3, descriptor: number[], data: { InlineBinary?: string; BulkDataURI?: string }, vr = 'US'): DicomJson {
  return {
    [`0028110${colour}`]: { vr, Value: descriptor },
    [`0028120${colour}`]: { vr: 'OW', ...data },
  };
}

const PALETTE_8BIT: DicomJson = {
  '00280004': { vr: 'CS', Value: ['PALETTE COLOR'] },
  '00280100': { vr: 'US', Value: [8] },
  '00280101': { vr: 'US', Value: [8] },
  '00280102': { vr: 'US', Value: [7] },
};

describe('pixelModuleOf', () => {
  it('reads the image pixel, modality LUT and VOI LUT attributes', async () => {
    const module = await pixelModuleOf(
      ct({
        '00280008': { vr: 'IS', Value: [3] },
        '00281050': { vr: 'DS', Value: [40, -600, 300] },
        '00281051': { vr: 'DS', Value: [400, 1500, 2000] },
        '00281052': { vr: 'DS', Value: [-1024] },
        '00281053': { vr: 'DS', Value: ['0.5'] },
        '00281056': { vr: 'CS', Value: ['SIGMOID'] },
      }),
      noBulk,
    );
    expect(module).toEqual({
      rows: 512, columns: 512, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 12, highBit: 11, pixelRepresentation: 0,
      photometric: 'MONOCHROME2', planarConfiguration: 0, numberOfFrames: 3, rescaleSlope: 0.5, rescaleIntercept: -1024,
      windows: [{ center: 40, width: 400 }, { center: -600, width: 1500 }, { center: 300, width: 2000 }], voiFunction: 'SIGMOID',
    });
  });

  it('defaults what has one sensible value: rescale 1/0, no window, LINEAR, one frame, BitsStored and HighBit', async () => {
    const module = await pixelModuleOf(ct({}, ['00280002', '00280101', '00280102', '00280103']), noBulk);
    expect(module).toMatchObject({ samplesPerPixel: 1, bitsStored: 16, highBit: 15, pixelRepresentation: 0, rescaleSlope: 1, rescaleIntercept: 0, windows: [], voiFunction: 'LINEAR', numberOfFrames: 1 });
  });

  it('pairs centers and widths, and skips a window its function cannot use', async () => {
    const module = await pixelModuleOf(ct({ '00281050': { vr: 'DS', Value: [40, 50, 60] }, '00281051': { vr: 'DS', Value: [0.5, 350] } }), noBulk);
    expect(module.windows).toEqual([{ center: 50, width: 350 }]);
  });

  it.each([
    ['a missing Rows', ct({}, ['00280010']), /Rows \(0028,0010\) is missing/],
    ['Rows 0', ct({ '00280010': { vr: 'US', Value: [0] } }), /Rows \(0028,0010\) is 0/],
    ['Columns 0', ct({ '00280011': { vr: 'US', Value: [0] } }), /Columns \(0028,0011\) is 0/],
    ['a missing PhotometricInterpretation', ct({}, ['00280004']), /PhotometricInterpretation \(0028,0004\) is missing/],
    ['SamplesPerPixel 3 with MONOCHROME2', ct({ '00280002': { vr: 'US', Value: [3] } }), /SamplesPerPixel \(0028,0002\) is 3 but MONOCHROME2 has 1/],
    ['SamplesPerPixel 1 with RGB', ct({ '00280004': { vr: 'CS', Value: ['RGB'] } }), /SamplesPerPixel \(0028,0002\) is 1 but RGB has 3/],
    ['BitsStored > BitsAllocated', ct({ '00280101': { vr: 'US', Value: [17] } }), /BitsStored \(0028,0101\) is 17 but BitsAllocated \(0028,0100\) is 16/],
    ['HighBit below BitsStored − 1', ct({ '00280102': { vr: 'US', Value: [7] } }), /HighBit \(0028,0102\) is 7/],
    ['HighBit past the cell', ct({ '00280102': { vr: 'US', Value: [16] } }), /HighBit \(0028,0102\) is 16/],
    ['PixelRepresentation 2', ct({ '00280103': { vr: 'US', Value: [2] } }), /PixelRepresentation \(0028,0103\) is 2/],
    ['PlanarConfiguration 2', { ...ct({ '00280004': { vr: 'CS', Value: ['RGB'] }, '00280100': { vr: 'US', Value: [8] }, '00280101': { vr: 'US', Value: [8] }, '00280102': { vr: 'US', Value: [7] } }, ['00280002']), '00280006': { vr: 'US', Value: [2] } }, /PlanarConfiguration \(0028,0006\) is 2/],
    ['NumberOfFrames 0', ct({ '00280008': { vr: 'IS', Value: [0] } }), /NumberOfFrames \(0028,0008\) is 0/],
    ['a RescaleSlope of 0', ct({ '00281053': { vr: 'DS', Value: [0] } }), /RescaleSlope \(0028,1053\) is 0/],
    ['a WindowCenter that is not a number', ct({ '00281050': { vr: 'DS', Value: ['forty'] } }), /WindowCenter \(0028,1050\) holds "forty"/],
    ['BitsAllocated 1 with RGB', ct({ '00280004': { vr: 'CS', Value: ['RGB'] }, '00280002': { vr: 'US', Value: [3] }, '00280100': { vr: 'US', Value: [1] }, '00280101': { vr: 'US', Value: [1] }, '00280102': { vr: 'US', Value: [0] } }), /BitsAllocated \(0028,0100\) is 1 but RGB needs 8 or 16/],
  ])('refuses %s with 422, naming the attribute', async (_, json, reason) => {
    const error = await refusal(json);
    expect(error.status).toBe(422);
    expect(error.message).toMatch(reason);
  });

  it.each([
    ['CMYK', ct({ '00280004': { vr: 'CS', Value: ['CMYK'] }, '00280002': { vr: 'US', Value: [4] } }), /PhotometricInterpretation \(0028,0004\) CMYK is not rendered/],
    ['BitsAllocated 12 (ACR-NEMA packing)', ct({ '00280100': { vr: 'US', Value: [12] } }), /BitsAllocated \(0028,0100\) 12 is not rendered/],
    ['32-bit RGB', ct({ '00280004': { vr: 'CS', Value: ['RGB'] }, '00280002': { vr: 'US', Value: [3] }, '00280100': { vr: 'US', Value: [32] }, '00280101': { vr: 'US', Value: [32] }, '00280102': { vr: 'US', Value: [31] } }), /32 is rendered for MONOCHROME1\/2 only/],
  ])('answers 501 for %s, which is valid but not rendered', async (_, json, reason) => {
    const error = await refusal(json);
    expect(error.status).toBe(501);
    expect(error.message).toMatch(reason);
  });

  describe('PALETTE COLOR', () => {
    const entries8 = Buffer.from([0, 64, 128, 255]).toString('base64');

    it('reads inline tables and fetches BulkDataURI ones, 0 entries meaning 65536', async () => {
      const big = Buffer.alloc(65536 * 2);
      for (let i = 0; i < 65536; i++) big.writeUInt16LE(65535 - i, i * 2);
      const readBulk = vi.fn(async (uri: string) => {
        expect(uri).toBe('studies/1/series/2/instances/3/bulkdata/00281203');
        return big;
      });
      const module = await pixelModuleOf(
        ct({
          '00280004': { vr: 'CS', Value: ['PALETTE COLOR'] },
          ...palette(1, [4, 0, 8], { InlineBinary: entries8 }),
          ...palette(2, [4, 0, 8], { InlineBinary: entries8 }),
          ...palette(3, [0, 0, 16], { BulkDataURI: 'studies/1/series/2/instances/3/bulkdata/00281203' }),
        }),
        readBulk,
      );
      expect(readBulk).toHaveBeenCalledTimes(1);
      expect(module.palette!.red).toEqual({ entries: 4, firstMapped: 0, bits: 8, data: new Uint16Array([0, 64, 128, 255]) });
      expect(module.palette!.blue).toMatchObject({ entries: 65536, firstMapped: 0, bits: 16 });
      expect(module.palette!.blue.data[0]).toBe(65535);
      expect(module.palette!.blue.data[65535]).toBe(0);
    });

    it('reads a negative first mapped value for signed pixels, whether the descriptor is US or SS', async () => {
      const table = { InlineBinary: entries8 };
      const signed = { ...PALETTE_8BIT, '00280103': { vr: 'US', Value: [1] } };
      const us = await pixelModuleOf({ ...ct(signed), ...palette(1, [4, 65436, 8], table), ...palette(2, [4, 65436, 8], table), ...palette(3, [4, 65436, 8], table) }, noBulk);
      const ss = await pixelModuleOf({ ...ct(signed), ...palette(1, [4, -100, 8], table, 'SS'), ...palette(2, [4, -100, 8], table, 'SS'), ...palette(3, [4, -100, 8], table, 'SS') }, noBulk);
      expect(us.palette!.green.firstMapped).toBe(-100);
      expect(ss.palette!.green.firstMapped).toBe(-100);
    });

    it('refuses a segmented palette with 501', async () => {
      const error = await refusal({ ...ct(PALETTE_8BIT), ...palette(1, [4, 0, 8], {}), '00281221': { vr: 'OW', InlineBinary: 'AAA=' } });
      expect(error.status).toBe(501);
      expect(error.message).toMatch(/segmented palettes \(SegmentedRedPaletteColorLookupTableData \(0028,1221\)\) are not rendered/);
    });

    it.each([
      ['a descriptor of two values', { ...palette(1, [4, 0], { InlineBinary: entries8 }) }, /RedPaletteColorLookupTableDescriptor \(0028,1101\) must hold 3 values/],
      ['12 bits per entry', { ...palette(1, [4, 0, 12], { InlineBinary: entries8 }) }, /RedPaletteColorLookupTableDescriptor \(0028,1101\) gives 12 bits per entry/],
      ['missing table data', { ...palette(1, [4, 0, 8], {}) }, /RedPaletteColorLookupTableData \(0028,1201\) is missing/],
      ['a table shorter than its descriptor', { ...palette(1, [8, 0, 16], { InlineBinary: entries8 }) }, /RedPaletteColorLookupTableData \(0028,1201\) holds 4 bytes, too few for 8 entries/],
    ])('refuses %s with 422', async (_, tables, reason) => {
      const error = await refusal({ ...ct(PALETTE_8BIT), ...palette(2, [4, 0, 8], { InlineBinary: entries8 }), ...palette(3, [4, 0, 8], { InlineBinary: entries8 }), ...tables });
      expect(error.status).toBe(422);
      expect(error.message).toMatch(reason);
    });
  });
});
