import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { frameRanges, type ByteReader } from '../../src/dicom/frames.js';
import { DicomParseError, fileMetaUids, NeedMoreBytes, NeedsInflating, parsePart10 } from '../../src/dicom/parse.js';
import { writePart10 } from '../../src/dicom/write.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; numberOfFrames: number };
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const reader = (file: Buffer): ByteReader => ({ size: file.length, read: async (offset, length) => file.subarray(offset, offset + length) });

/** Lengths of the pixel data items as dcmtk's dcmdump lists them, the offset table first. */
function dcmtkItemLengths(file: string): number[] {
  const dump = execFileSync('dcmdump', ['-q', file], { encoding: 'latin1' });
  return [...dump.matchAll(/^\s*\(fffe,e000\) pi .*#\s+(\d+), 1 Item$/gm)].map((m) => Number(m[1]));
}

describe('Part 10 parsing', () => {
  for (const fixture of manifest) {
    it(`reads the UIDs and syntax of ${fixture.path}`, () => {
      const header = parsePart10(readFileSync(path.join(FIXTURES, fixture.path)));
      expect(header.transferSyntaxUID).toBe(fixture.transferSyntaxUID);
      expect([header.studyInstanceUID, header.seriesInstanceUID, header.sopInstanceUID]).toEqual([fixture.studyUID, fixture.seriesUID, fixture.sopInstanceUID]);
      expect(header.pixelData).toBeDefined();
    });
  }

  it('asks for more bytes when given only a prefix of the header', () => {
    const file = readFileSync(path.join(FIXTURES, 'explicit-le.dcm'));
    expect(() => parsePart10(file.subarray(0, 300), file.length)).toThrow(NeedMoreBytes);
  });

  it('asks for a deflated data set to be inflated whatever its deflated bytes look like', () => {
    // Deflated bytes that read as a sequence of undefined length without items, right after the meta information.
    const meta = writePart10([], { transferSyntaxUID: '1.2.840.10008.1.2.1.99', sopClassUID: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUID: '1.2.3.4' });
    const lookalike = Buffer.from([0x08, 0x00, 0x40, 0x11, 0x53, 0x51, 0, 0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7, 8]);
    const file = Buffer.concat([meta, lookalike]);
    expect(() => parsePart10(file, file.length, { deflated: 'ask' })).toThrow(NeedsInflating);
  });

  it('reads a deflated data set from where the meta information ends, whatever the preamble holds', () => {
    const plain = parsePart10(readFileSync(path.join(FIXTURES, 'explicit-le.dcm')));
    // PS3.10 7.1: the preamble is the application's to fill (a TIFF header, say); it is no part of the data set.
    const file = readFileSync(path.join(FIXTURES, 'deflated.dcm')).fill('TIFF', 0, 128);
    const header = parsePart10(file);
    expect(Object.keys(header.dataSet.elements).sort()).toEqual(Object.keys(plain.dataSet.elements).sort());
    expect(header.pixelData!.dataOffset).toBe(header.size - header.pixelData!.length);
  });

  it('refuses a file without the DICM prefix, naming what is missing', () => {
    expect(() => parsePart10(Buffer.alloc(400))).toThrow(DicomParseError);
    expect(() => parsePart10(Buffer.alloc(400))).toThrow(/preamble and "DICM" prefix/);
  });
});

describe('file meta UIDs of a file refused unparsed', () => {
  const meta = (sopClassUID: string, sopInstanceUID: string) => writePart10([], { transferSyntaxUID: '1.2.840.10008.1.2.1', sopClassUID, sopInstanceUID });

  it('names the instance from its first bytes, the data set cut off anywhere after the meta information', () => {
    const file = Buffer.concat([meta('1.2.840.10008.5.1.4.1.1.2', '1.2.3.4'), Buffer.from([0x08, 0x00, 0x16])]);
    expect(fileMetaUids(file)).toEqual({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2', sopInstanceUid: '1.2.3.4' });
  });

  it('names nothing it cannot vouch for: no DICM, meta information cut short, a UID that is not one', () => {
    const file = meta('1.2.840.10008.5.1.4.1.1.2', '1.2.3.4');
    expect(fileMetaUids(Buffer.from('Patient: Doe^Jane, a referral letter'))).toEqual({});
    expect(fileMetaUids(file.subarray(0, file.indexOf(Buffer.from('1.2.3.4')) + 3))).toEqual({});
    expect(fileMetaUids(meta('1.2.840.10008.5.1.4.1.1.2', '1.2.03.x'))).toEqual({ sopClassUid: '1.2.840.10008.5.1.4.1.1.2' });
  });
});

describe('frame byte ranges', () => {
  for (const fixture of manifest) {
    it(`finds every frame of ${fixture.path}`, async () => {
      const file = readFileSync(path.join(FIXTURES, fixture.path));
      const header = parsePart10(file);
      const frames = await frameRanges(header, reader(file));
      expect(frames).toHaveLength(fixture.numberOfFrames);
      const bytes = header.inflated ? header.bytes : file;
      for (const frame of frames) {
        for (const [offset, length] of frame) {
          expect(offset).toBeGreaterThan(header.pixelData!.dataOffset - 1);
          expect(offset + length).toBeLessThanOrEqual(bytes.length);
        }
      }
      // Frames never overlap and come in order.
      const flat = frames.flat();
      for (let i = 1; i < flat.length; i++) expect(flat[i]![0]).toBeGreaterThanOrEqual(flat[i - 1]![0] + flat[i - 1]![1]);
    });
  }

  it('gathers every fragment of a frame, as dcmtk lists them, with or without a Basic Offset Table', async () => {
    for (const name of ['multiframe-fragments-bot.dcm', 'multiframe-fragments-no-bot.dcm']) {
      const file = readFileSync(path.join(FIXTURES, name));
      const frames = await frameRanges(parsePart10(file), reader(file));
      const [, ...fragments] = dcmtkItemLengths(path.join(FIXTURES, name));
      expect(fragments.length, name).toBeGreaterThan(8);
      expect(frames.flat().map(([, length]) => length), name).toEqual(fragments);
      expect(frames.some((f) => f.length > 1), `${name} has frames in several fragments`).toBe(true);
      for (const frame of frames) expect(file.readUInt16BE(frame[0]![0]), `${name}: each frame begins with SOI`).toBe(0xffd8);
    }
  });
});
