import { describe, expect, it } from 'vitest';
import { decodeText } from '../../src/dicom/charset.js';

const ESC = 0x1b;
const bytes = (...parts: Array<string | number[]>) =>
  Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'latin1') : Buffer.from(p))));

describe('Specific Character Set (PS3.5 6.1, Annexes H–K)', () => {
  it('decodes Japanese ISO 2022 IR 87 with escapes, per group (H.3.1)', () => {
    // Yamada^Tarou=山田^太郎=やまだ^たろう
    const value = bytes(
      'Yamada^Tarou=',
      [ESC, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, ESC, 0x28, 0x42], '^',
      [ESC, 0x24, 0x42, 0x42, 0x40, 0x4f, 0x3a, ESC, 0x28, 0x42], '=',
      [ESC, 0x24, 0x42, 0x24, 0x64, 0x24, 0x5e, 0x24, 0x40, ESC, 0x28, 0x42], '^',
      [ESC, 0x24, 0x42, 0x24, 0x3f, 0x24, 0x6d, 0x24, 0x26, ESC, 0x28, 0x42],
    );
    expect(decodeText(value, ['', 'ISO 2022 IR 87'], 'PN')).toBe('Yamada^Tarou=山田^太郎=やまだ^たろう');
  });

  it('decodes half-width katakana of ISO 2022 IR 13 beside IR 87 (H.3.2)', () => {
    // ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎
    const value = bytes([0xd4, 0xcf, 0xc0, 0xde], '^', [0xc0, 0xdb, 0xb3], '=', [ESC, 0x24, 0x42, 0x3b, 0x33, 0x45, 0x44, ESC, 0x28, 0x4a], '^', [ESC, 0x24, 0x42, 0x42, 0x40, 0x4f, 0x3a, ESC, 0x28, 0x4a]);
    expect(decodeText(value, ['ISO 2022 IR 13', 'ISO 2022 IR 87'], 'PN')).toBe('ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎');
  });

  it('decodes Korean ISO 2022 IR 149 (I.2)', () => {
    // Hong^Gildong=洪^吉洞=홍^길동
    const g1 = [ESC, 0x24, 0x29, 0x43];
    const value = bytes('Hong^Gildong=', g1, [0xfb, 0xf3], '^', g1, [0xd1, 0xce, 0xd4, 0xd7], '=', g1, [0xc8, 0xab], '^', g1, [0xb1, 0xe6, 0xb5, 0xbf]);
    expect(decodeText(value, ['', 'ISO 2022 IR 149'], 'PN')).toBe('Hong^Gildong=洪^吉洞=홍^길동');
  });

  it('decodes Chinese GB18030 and UTF-8 (J.3, J.1)', () => {
    expect(decodeText(Buffer.from([0x57, 0x61, 0x6e, 0x67, 0x5e, 0x58, 0x69, 0x61, 0x6f, 0x44, 0x6f, 0x6e, 0x67, 0x3d, 0xcd, 0xf5, 0x5e, 0xd0, 0xa1, 0xb6, 0xab, 0x3d]), 'GB18030', 'PN')).toBe('Wang^XiaoDong=王^小东=');
    expect(decodeText(Buffer.from('Wang^XiaoDong=王^小東=', 'utf8'), 'ISO_IR 192', 'PN')).toBe('Wang^XiaoDong=王^小東=');
  });

  it('decodes GB2312 through ISO 2022 IR 58 (K.1)', () => {
    const g1 = [ESC, 0x24, 0x29, 0x41];
    const value = bytes('Zhang^XiaoDong=', g1, [0xd5, 0xc5], '^', g1, [0xd0, 0xa1, 0xb6, 0xab], '=');
    expect(decodeText(value, ['', 'ISO 2022 IR 58'], 'PN')).toBe('Zhang^XiaoDong=张^小东=');
  });

  it('decodes the single-byte sets', () => {
    expect(decodeText(Buffer.from([0x4d, 0xfc, 0x6c, 0x6c, 0x65, 0x72]), 'ISO_IR 100', 'PN')).toBe('Müller');
    expect(decodeText(Buffer.from([0xc4, 0xe9, 0xef, 0xed, 0xf5, 0xf3, 0xe9, 0xef, 0xf2]), 'ISO_IR 126', 'PN')).toBe('Διονυσιος');
    expect(decodeText(Buffer.from([0xbb, 0xee, 0xda, 0x63, 0x65, 0xdc, 0xd1, 0x79, 0x70, 0xd3]), 'ISO_IR 144', 'PN')).toBe('Люкceмбypг');
    expect(decodeText(Buffer.from([0xf9, 0xf8, 0xe5, 0xef]), 'ISO_IR 138', 'PN')).toBe('שרון');
    expect(decodeText(Buffer.from([0xe2, 0xc8, 0xd3, 0xc8]), 'ISO_IR 127', 'PN')).toBe('قبسب');
    expect(decodeText(Buffer.from([0xb9, 0xd2, 0xc2]), 'ISO_IR 166', 'PN')).toBe('นาย');
  });

  it('switches to a G1 set by escape and back at each delimiter', () => {
    const value = bytes([ESC, 0x2d, 0x46], [0xc1], '\\', [0xc1]);
    expect(decodeText(value, ['ISO 2022 IR 100', 'ISO 2022 IR 126'], 'LO')).toBe('Α\\Á');
  });

  it('reads undeclared UTF-8 as UTF-8 and other undeclared high bytes as Latin-1', () => {
    expect(decodeText(Buffer.from('Žofie', 'utf8'), undefined, 'PN')).toBe('Žofie');
    expect(decodeText(Buffer.from([0x4d, 0xfc]), undefined, 'PN')).toBe('Mü');
  });
});
