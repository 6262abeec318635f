import { Readable } from 'node:stream';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { InflateLimitExceeded, InflatingReader } from '../../src/dicom/inflate.js';
import { DicomParseError, NeedsInflating, parsePart10 } from '../../src/dicom/parse.js';
import { executablePreamble } from '../../src/dicom/preamble.js';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { MAX_ELEMENTS, TooManyElements, walkDataSet, type Encoding } from '../../src/dicom/walk.js';
import { newUid, writePart10 } from '../../src/dicom/write.js';
import { delimiter, element } from '../fixtures/raw-elements.js';

const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const EXPLICIT: Encoding = { explicitVr: true, littleEndian: true };
const IMPLICIT: Encoding = { explicitVr: false, littleEndian: true };

const text = (value: string) => Buffer.from(value.length % 2 ? `${value} ` : value, 'latin1');
const walk = (bytes: Buffer, encoding = EXPLICIT) => () => walkDataSet(bytes, 0, encoding);
/** An undefined-length sequence of one undefined-length item holding one element. */
const sequence = (itemDelimiterLength = 0, sequenceDelimiterLength = 0) =>
  element('00081115', 'SQ', Buffer.concat([delimiter(0xe000, 0xffffffff), element('00081150', 'LO', text('X')), delimiter(0xe00d, itemDelimiterLength), delimiter(0xe0dd, sequenceDelimiterLength)]), 0xffffffff);

describe('the element walk before parsing', () => {
  it('stops a data set followed by zeros at the first (0000,0000), naming both tags', () => {
    const bytes = Buffer.concat([element('00100010', 'PN', text('Doe^Jane')), element('0020000E', 'UI', text('1.2.3')), Buffer.alloc(64 * 1024 * 1024)]);
    expect(walk(bytes)).toThrow(/^\(0000,0000\) at offset 30 follows \(0020,000E\): the tags of a data set ascend \(PS3\.5 7\.1\)/);
  });

  it('finds tags out of order in Implicit VR and inside items', () => {
    expect(walk(Buffer.concat([element('00100020', '', text('ID'), undefined, false), element('00100010', '', text('Doe'), undefined, false)]), IMPLICIT)).toThrow(
      /\(0010,0010\) at offset \d+ follows \(0010,0020\)/,
    );
    const item = Buffer.concat([element('00081155', 'UI', text('1.2')), element('00081150', 'UI', text('1.2'))]);
    const inSequence = element('00081115', 'SQ', Buffer.concat([delimiter(0xe000, item.length), item]));
    expect(walk(inSequence)).toThrow(/\(0008,1150\) at offset \d+ follows \(0008,1155\)/);
  });

  it('refuses item and sequence delimiters with a length, and delimiters or items where none belongs', () => {
    expect(walk(sequence(0, 0))).not.toThrow();
    expect(walk(sequence(4, 0))).toThrow(/an item delimiter \(FFFE,E00D\) at offset \d+ declares a length of 4; a delimiter has none \(PS3\.5 7\.5\)/);
    expect(walk(sequence(0, 2))).toThrow(/a sequence delimiter \(FFFE,E0DD\) at offset \d+ declares a length of 2/);
    expect(walk(Buffer.concat([element('00100010', 'PN', text('Doe')), delimiter(0xe00d)]))).toThrow(/an item delimiter \(FFFE,E00D\) at offset 12 ends no item of undefined length/);
    expect(walk(Buffer.concat([element('00100010', 'PN', text('Doe')), delimiter(0xe000, 0)]))).toThrow(/\(FFFE,E000\) at offset 12 stands outside a sequence/);
    const notAnItem = element('00081115', 'SQ', Buffer.concat([element('00081150', 'LO', text('X')), delimiter(0xe0dd)]), 0xffffffff);
    expect(walk(notAnItem)).toThrow(/sequence \(0008,1115\) holds \(0008,1150\) at offset 12 where an item \(FFFE,E000\) must begin/);
    const definedAndDelimited = element('00081115', 'SQ', Buffer.concat([delimiter(0xe000, 0), delimiter(0xe0dd)]));
    expect(walk(definedAndDelimited)).toThrow(/has a defined length and also a sequence delimiter/);
  });

  it('stops quietly where the bytes end, so a prefix asks the parser for more', () => {
    const whole = Buffer.concat([sequence(), element('00100010', 'PN', text('Doe^Jane')), element('00200010', 'SH', text('1'))]);
    for (let cut = 1; cut < whole.length; cut++) expect(walk(whole.subarray(0, cut)), `cut at ${cut}`).not.toThrow();
  });

  it(`refuses more than ${MAX_ELEMENTS.toLocaleString('en')} elements before the parser builds one object each`, () => {
    const many = Buffer.alloc((MAX_ELEMENTS + 1) * 8);
    for (let i = 0; i <= MAX_ELEMENTS; i++) {
      many.writeUInt16LE(0x0009 + 2 * Math.floor(i / 0xf000), i * 8);
      many.writeUInt16LE(0x1000 + (i % 0xf000), i * 8 + 2);
      many.write('LO', i * 8 + 4, 'latin1');
    }
    expect(walk(many)).toThrow(TooManyElements);
    expect(walk(many.subarray(0, MAX_ELEMENTS * 8))).not.toThrow();
  });
});

describe('Part 10 parsing of hostile files', () => {
  const file = (dataSet: Buffer, sopInstanceUID = newUid(), transferSyntaxUID: string = TransferSyntax.ExplicitVRLittleEndian) =>
    Buffer.concat([writePart10([], { transferSyntaxUID, sopClassUID: SECONDARY_CAPTURE, sopInstanceUID }), dataSet]);
  const uids = (sop: string) => [
    element('00080016', 'UI', Buffer.from(`${SECONDARY_CAPTURE}\0`, 'latin1')),
    element('00080018', 'UI', Buffer.from(sop.length % 2 ? `${sop}\0` : sop, 'latin1')),
    element('0020000D', 'UI', text('1.2.3')),
    element('0020000E', 'UI', text('1.2.3.4')),
  ];

  it('refuses a NUL inside a UID that dicom-parser would cut there, and takes one trailing NUL of padding', () => {
    const inside = `${newUid()}\0.4`;
    expect(() => parsePart10(file(Buffer.concat(uids(inside)), inside))).toThrow(/SOPInstanceUID \(0008,0018\) ".*\\0\.4" is not a valid DICOM UID .*a NUL may only pad its end/);
    const odd = newUid().slice(0, 41);
    expect(parsePart10(file(Buffer.concat(uids(odd)), odd)).sopInstanceUID).toBe(odd);
  });

  it('asks for a deflated data set to be inflated rather than inflating it, when told to', () => {
    const sop = newUid();
    const deflated = file(zlib.deflateRawSync(Buffer.concat(uids(sop))), sop, TransferSyntax.DeflatedExplicitVRLittleEndian);
    expect(() => parsePart10(deflated, deflated.length, { deflated: 'ask' })).toThrow(NeedsInflating);
    expect(parsePart10(deflated).sopInstanceUID).toBe(sop);
  });
});

describe('InflatingReader', () => {
  const deflate = (bytes: Buffer) => Readable.from([zlib.deflateRawSync(bytes)]);

  it('holds only the prefix asked for, counts the rest, and gives the whole length', async () => {
    const data = Buffer.alloc(8 * 1024 * 1024, 7);
    const reader = new InflatingReader(Buffer.from('meta'), deflate(data), 64 * 1024 * 1024);
    const prefix = await reader.prefix(1000);
    expect(prefix.toString('latin1', 0, 6)).toBe('meta\x07\x07');
    expect(prefix.length).toBe(1000);
    expect(await reader.drain()).toBe(4 + data.length);
    expect(reader.size).toBe(4 + data.length);
  });

  it('stops as soon as the bound is passed', async () => {
    const reader = new InflatingReader(Buffer.alloc(0), deflate(Buffer.alloc(64 * 1024 * 1024)), 1024 * 1024);
    await expect(reader.drain()).rejects.toThrow(InflateLimitExceeded);
    expect(reader.inflatedBytes).toBeLessThanOrEqual(1024 * 1024 + 256 * 1024);
    await reader.close();
  });

  it('names a corrupt or cut-short stream as a parse error', async () => {
    const cut = zlib.deflateRawSync(Buffer.alloc(100_000, 1)).subarray(0, 20);
    await expect(new InflatingReader(Buffer.alloc(0), Readable.from([cut]), 1e9).drain()).rejects.toThrow(DicomParseError);
    await expect(new InflatingReader(Buffer.alloc(0), Readable.from([Buffer.from([0xff, 0xff, 0xff])]), 1e9).drain()).rejects.toThrow(/does not inflate/);
  });
});

describe('executable headers in the preamble', () => {
  it('names PE, ELF, Mach-O and scripts, and nothing in a preamble of zeros', () => {
    const preamble = (start: Buffer | string) => Buffer.concat([Buffer.from(start as string, 'latin1'), Buffer.alloc(128)]).subarray(0, 128);
    expect(executablePreamble(preamble('MZ\x90\x00'))).toMatch(/^PE/);
    expect(executablePreamble(preamble('\x7fELF\x02'))).toMatch(/^ELF/);
    expect(executablePreamble(preamble(Buffer.from([0xcf, 0xfa, 0xed, 0xfe])))).toMatch(/^Mach-O/);
    expect(executablePreamble(preamble('#!/bin/sh\n'))).toMatch(/^script/);
    expect(executablePreamble(Buffer.alloc(132))).toBeUndefined();
  });
});
