import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { afterAll, describe, expect, it } from 'vitest';
import { toDicomJson, type DicomJson } from '../../src/dicom/json.js';
import { parsePart10 } from '../../src/dicom/parse.js';
import { toNativeDicomXml } from '../../src/dicom/xml.js';

/**
 * Our Native DICOM Model (PS3.19 A.1) against dcmtk's `dcm2xml --native-format`, attribute by attribute, on the
 * same files. dcmtk runs with +U8 (values in UTF-8, as the model requires) and +Eb (binary as InlineBinary).
 * Differences allowed, each for a reason:
 *  - bulk data: we give what DICOM JSON gives by BulkDataURI (pixel data; binary values over 1 KiB) as
 *    `<BulkData uri>`; dcmtk writes every binary value inline.
 *  - DS and IS: we write DICOM JSON's numbers, dcmtk the file's text ("2.50" and 2.5 are the same value);
 *    FL and FD: dcmtk rounds its text to the type's precision; compared as the numbers they stand for.
 *  - a private data element whose block has no Private Creator: we keep its tag (gggg,xxee), dcmtk drops the
 *    block (gggg00ee) and it then reads like a Private Creator element.
 *  - Specific Character Set: we keep the file's, as DICOM JSON does (values are Unicode "regardless of any DICOM
 *    Specific Character Set", PS3.19 A.1.5); dcmtk writes the ISO_IR 192 it converted to.
 *  - the root element: we declare the schema's namespace (PS3.19 A.1.6); dcmtk does not unless asked (+Xn).
 *  - InlineBinary of OW, OF, OL, OD: dcmtk's words are big endian, ours (DICOM JSON's) little endian.
 *  - dcmtk 3.6.7 writes an empty name group (or an empty PN value) as a copy of the group it wrote before it.
 * Fixture left out: charset-jis.dcm, which dcmtk cannot convert to UTF-8 (its iconv refuses ISO 2022 IR 87).
 */

const FIXTURES = path.join(import.meta.dirname, '../fixtures/dicom');
const COMPARED_FIXTURES = [
  'explicit-le',
  'implicit-le',
  'explicit-be',
  'deflated',
  'jpeg-baseline',
  'multiframe-40-rle',
  'ct-series-1',
  'charset-latin1',
  'charset-utf8',
  'charset-greek',
  'charset-cyrillic',
  'charset-gb18030',
  'charset-korean',
];
const BULK_DATA_BASE = 'studies/1/series/2/instances/3';
const PIXEL_DATA_TAGS = new Set(['7FE00010', '7FE00008', '7FE00009']);
/** DICOM JSON's bound for binary values given inline (src/dicom/json.ts). */
const INLINE_BINARY_LIMIT = 1024;

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'dicom-xml-'));
afterAll(() => fs.rmSync(workDir, { recursive: true, force: true }));

function dicomJsonOf(file: string): DicomJson {
  return toDicomJson(parsePart10(fs.readFileSync(file)).dataSet, { bulkDataBase: BULK_DATA_BASE });
}

function dcm2xml(file: string): string {
  return execFileSync('dcm2xml', ['-q', '--native-format', '+U8', '+Eb', file], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
}

// ---- reading a Native DICOM Model document back into plain data ----

type PersonNameModel = Record<string, Record<string, string>>;
type AttributeModel = {
  tag: string;
  vr: string;
  keyword?: string;
  privateCreator?: string;
  values?: (string | number)[];
  names?: PersonNameModel[];
  items?: AttributeModel[][];
  bulkDataUri?: string;
  inlineBinary?: string;
  /** Set by `comparable`: the value is bulk data, given by reference (ours) or inline (dcmtk). */
  bulk?: true;
};

type XmlNode = Record<string, unknown>;
type XmlElement = { name: string; attributes: Record<string, string>; children: XmlNode[] };

const parser = new XMLParser({
  preserveOrder: true,
  ignoreAttributes: false,
  attributeNamePrefix: '',
  trimValues: false,
  parseTagValue: false,
  parseAttributeValue: false,
  // Decodes numeric character references (&#13;) besides the five named ones.
  htmlEntities: true,
});

function elementsOf(nodes: XmlNode[]): XmlElement[] {
  return nodes.flatMap((node) => {
    const name = Object.keys(node).find((key) => key !== ':@')!;
    if (name === '#text') {
      expect(String(node[name]).trim(), 'text between elements').toBe('');
      return [];
    }
    if (name === '?xml') return [];
    return [{ name, attributes: (node[':@'] ?? {}) as Record<string, string>, children: node[name] as XmlNode[] }];
  });
}

function textOf(element: XmlElement): string {
  return element.children.map((node) => ('#text' in node ? String(node['#text']) : '')).join('');
}

/** Children of one name, checked to be numbered 1, 2, 3… in order (PS3.19 A.1.5: the number attribute). */
function numbered(elements: XmlElement[], name: string): XmlElement[] {
  const found = elements.filter((e) => e.name === name);
  expect(found.map((e) => e.attributes.number)).toEqual(found.map((_, i) => String(i + 1)));
  return found;
}

function readDocument(xml: string): { root: XmlElement; attributes: AttributeModel[] } {
  expect(XMLValidator.validate(xml)).toBe(true);
  const roots = elementsOf(parser.parse(xml) as XmlNode[]);
  expect(roots.map((r) => r.name)).toEqual(['NativeDicomModel']);
  return { root: roots[0]!, attributes: readDataSet(roots[0]!) };
}

function readDataSet(parent: XmlElement): AttributeModel[] {
  const elements = elementsOf(parent.children);
  expect(new Set(elements.map((e) => e.name))).toEqual(new Set(elements.length ? ['DicomAttribute'] : []));
  return elements.map((element) => {
    const { tag, vr, keyword, privateCreator, ...others } = element.attributes;
    expect(others).toEqual({});
    const attribute: AttributeModel = { tag: tag!, vr: vr! };
    if (keyword !== undefined) attribute.keyword = keyword;
    if (privateCreator !== undefined) attribute.privateCreator = privateCreator;
    const children = elementsOf(element.children);
    const kinds = new Set(children.map((c) => c.name));
    expect(kinds.size, `${tag} holds one kind of content`).toBeLessThanOrEqual(1);
    if (kinds.has('Value')) attribute.values = numbered(children, 'Value').map(textOf);
    if (kinds.has('PersonName')) attribute.names = numbered(children, 'PersonName').map(readPersonName);
    if (kinds.has('Item')) attribute.items = numbered(children, 'Item').map(readDataSet);
    if (kinds.has('BulkData')) attribute.bulkDataUri = children[0]!.attributes.uri;
    if (kinds.has('InlineBinary')) attribute.inlineBinary = textOf(children[0]!);
    return attribute;
  });
}

function readPersonName(element: XmlElement): PersonNameModel {
  const name: PersonNameModel = {};
  for (const group of elementsOf(element.children)) {
    name[group.name] = Object.fromEntries(elementsOf(group.children).map((component) => [component.name, textOf(component)]));
  }
  return name;
}

/** Each side with the documented differences taken out (see the top of this file). */
function comparable(attributes: AttributeModel[], side: 'ours' | 'dcmtk'): AttributeModel[] {
  return attributes.map((attribute) => {
    const out: AttributeModel = { ...attribute };
    if (attribute.items) out.items = attribute.items.map((item) => comparable(item, side));
    if (attribute.values && ['DS', 'IS', 'FD'].includes(attribute.vr)) out.values = attribute.values.map((v) => (v === '' ? v : Number(v)));
    if (attribute.values && attribute.vr === 'FL') out.values = attribute.values.map((v) => (v === '' ? v : Math.fround(Number(v))));
    if (attribute.tag === '00080005') delete out.values;
    if (side === 'ours') {
      if (attribute.bulkDataUri !== undefined) {
        delete out.bulkDataUri;
        out.bulk = true;
      }
      const element = Number.parseInt(attribute.tag.slice(4), 16);
      if (isOddGroup(attribute.tag) && element >= 0x1000 && attribute.privateCreator === undefined) out.tag = `${attribute.tag.slice(0, 4)}00${attribute.tag.slice(6)}`;
    } else {
      if (attribute.inlineBinary !== undefined && (PIXEL_DATA_TAGS.has(attribute.tag) || Buffer.from(attribute.inlineBinary, 'base64').length > INLINE_BINARY_LIMIT)) {
        delete out.inlineBinary;
        out.bulk = true;
      }
      else if (attribute.inlineBinary !== undefined && attribute.vr in WORD_SWAP) out.inlineBinary = WORD_SWAP[attribute.vr]!(Buffer.from(attribute.inlineBinary, 'base64')).toString('base64');
      if (attribute.names) out.names = withoutRepeatedGroups(attribute.names);
    }
    return out;
  });
}

/** dcmtk encodes words big endian in InlineBinary ("its Base64 encoder requires big endian input"); DICOM JSON's are little endian. */
const WORD_SWAP: Record<string, (bytes: Buffer) => Buffer> = {
  OW: (b) => b.swap16(),
  OF: (b) => b.swap32(),
  OL: (b) => b.swap32(),
  OD: (b) => b.swap64(),
  OV: (b) => b.swap64(),
};

/** dcmtk's names without the groups it repeated for empty ones (a group equal to the one written before it). */
function withoutRepeatedGroups(names: PersonNameModel[]): PersonNameModel[] {
  let previous = '';
  return names.map((name) => {
    const kept: PersonNameModel = {};
    for (const [group, components] of Object.entries(name)) {
      const text = JSON.stringify(components);
      if (text !== previous) kept[group] = components;
      previous = text;
    }
    return kept;
  });
}

const isOddGroup = (tag: string) => Number.parseInt(tag.slice(3, 4), 16) % 2 === 1;

/** Every BulkData uri in ours is the BulkDataURI DICOM JSON gave, attribute by attribute. */
function expectBulkDataUris(attributes: AttributeModel[], json: DicomJson): void {
  const jsonAttributes = Object.keys(json).sort().map((tag) => json[tag]!);
  expect(attributes).toHaveLength(jsonAttributes.length);
  attributes.forEach((attribute, i) => {
    const source = jsonAttributes[i]!;
    expect(attribute.bulkDataUri).toBe(source.BulkDataURI);
    attribute.items?.forEach((item, j) => expectBulkDataUris(item, source.Value![j] as DicomJson));
  });
}

function compareWithDcmtk(file: string): { ours: AttributeModel[]; dcmtk: AttributeModel[] } {
  const json = dicomJsonOf(file);
  const ours = readDocument(toNativeDicomXml(json));
  const dcmtk = readDocument(dcm2xml(file));
  expectBulkDataUris(ours.attributes, json);
  expect(comparable(ours.attributes, 'ours')).toEqual(comparable(dcmtk.attributes, 'dcmtk'));
  return { ours: ours.attributes, dcmtk: dcmtk.attributes };
}

/**
 * Sequences (nested, empty, empty items), two private blocks in one group and one in an item, an orphan private
 * element, every VR but SV, UV and OV (src/dicom/walk.ts does not know their 32-bit length yet), text to escape.
 * Private Creators are plain: dcmtk 3.6.7 writes privateCreator unescaped (ours is escaped: see hostile text).
 */
function richDump(largeOb: string, largeOw: string): string {
  return String.raw`
(0008,0005) CS [ISO_IR 192]
(0008,0008) CS [ORIGINAL\\PRIMARY\AXIAL]
(0008,0013) TM [101530.123456]
(0008,0016) UI [1.2.840.10008.5.1.4.1.1.7]
(0008,0018) UI [1.2.826.0.1.3680043.9.7433.77.90.1.1]
(0008,0020) DA [20240131]
(0008,002a) DT [20240131101530.5+0100]
(0008,0054) AE [PACS_LITE]
(0008,0090) PN [Doe^John^Quincy^Dr.^Jr.=ドウ^ジョン=どう^じょん\Roe^^Ann]
(0008,1030) LO [Knee & ankle <left> "quoted" 'single']
(0008,103e) LO []
(0008,1190) UR [https://pacs.example/dicom-web?x=1&y=2]
(0009,0010) LO [ACME 1.0]
(0009,0011) LO [OTHER CO]
(0009,1001) LO [private one]
(0009,1002) SH [Größe]
(0009,1010) OB =${largeOb}
(0009,1101) US 7\8
(0009,1201) LO [orphan]
(0009,1203) UN 01\02\03\04
(0010,0010) PN [Müller^Jürgen]
(0010,0020) LO [PID90]
(0010,1010) AS [042Y]
(0018,0050) DS [2.50]
(0018,1050) DS [0.5\-1.25e2\1e-3]
(0018,9219) SS -42\17
(0018,9468) UC [Long unlimited characters]
(0020,000d) UI [1.2.826.0.1.3680043.9.7433.77.90]
(0020,000e) UI [1.2.826.0.1.3680043.9.7433.77.90.1]
(0020,0013) IS [ 42]
(0020,4000) LT [naïve café — ünïcödé ✓ 😀]
(0028,0009) AT (0054,0080)\(0018,1063)
(0028,1202) OW 0102\0304
(0028,9503) SS -1\2\-3
(0029,0012) LO (no value available)
(0040,0280) ST [Short text with ]]> inside]
(0040,a730) SQ (Sequence with undefined length #=3)
  (fffe,e000) na (Item with undefined length #=7)
    (0029,0010) LO [NESTED CREATOR]
    (0029,1001) SH [in item]
    (0040,a010) CS [CONTAINS]
    (0040,a040) CS [TEXT]
    (0040,a160) UT [Finding: lesion < 5 mm & stable]
    (0040,a168) SQ (Sequence with undefined length #=1)
      (fffe,e000) na (Item with undefined length #=3)
        (0008,0100) SH [121311]
        (0008,0102) SH [DCM]
        (0008,0104) LO [Localizer]
      (fffe,e00d) na (ItemDelimitationItem)
    (fffe,e0dd) na (SequenceDelimitationItem)
    (0028,1201) OW =${largeOw}
  (fffe,e00d) na (ItemDelimitationItem)
  (fffe,e000) na (Item with undefined length #=0)
  (fffe,e00d) na (ItemDelimitationItem)
  (fffe,e000) na (Item with undefined length #=1)
    (0040,a043) SQ (Sequence with undefined length #=0)
    (fffe,e0dd) na (SequenceDelimitationItem)
  (fffe,e00d) na (ItemDelimitationItem)
(fffe,e0dd) na (SequenceDelimitationItem)
(0042,0011) OB 25\50\44\46\2d\31\2e\37
(0066,0016) OF 1.5\-2.25
(0066,0022) OD 2.5
(0072,0075) OL 1\2\3
(0070,0084) PN (no value available)
(0072,0026) AT (0010,0010)
(0072,0074) FD 3.141592653589793\-0.1
(0072,0076) FL 0.3\1e-7
(0072,0078) UL 4000000000
(0072,007c) SL -2000000000
(7fe0,0010) OW 0000\0001\0002\0003
`;
}

describe('Native DICOM Model XML (PS3.19 A.1)', () => {
  for (const name of COMPARED_FIXTURES) {
    it(`reads as dcmtk's dcm2xml does for ${name}.dcm, attribute by attribute`, () => {
      const { ours } = compareWithDcmtk(path.join(FIXTURES, `${name}.dcm`));
      expect(ours.length).toBeGreaterThan(20);
    });
  }

  it("reads as dcmtk's does for sequences, private blocks, every VR and text to escape (a file dcmtk's dump2dcm made)", () => {
    const largeOb = path.join(workDir, 'large.ob');
    const largeOw = path.join(workDir, 'large.ow');
    fs.writeFileSync(largeOb, Buffer.alloc(3000, 0x5a));
    fs.writeFileSync(largeOw, Buffer.alloc(2048, 0xc3));
    fs.writeFileSync(path.join(workDir, 'rich.dump'), richDump(largeOb, largeOw));
    const file = path.join(workDir, 'rich.dcm');
    execFileSync('dump2dcm', ['-q', '+te', path.join(workDir, 'rich.dump'), file]);

    const { ours } = compareWithDcmtk(file);
    const byTag = (attributes: AttributeModel[], tag: string, creator?: string) =>
      attributes.filter((a) => a.tag === tag && a.privateCreator === creator);
    // What the comparison proved, seen directly.
    expect(byTag(ours, '00090001', 'ACME 1.0')[0]!.values).toEqual(['private one']);
    expect(byTag(ours, '00090001', 'OTHER CO')[0]!.values).toEqual(['7', '8']);
    expect(byTag(ours, '00090010', 'ACME 1.0')[0]!.bulkDataUri).toBe(`${BULK_DATA_BASE}/bulkdata/00091010`);
    expect(byTag(ours, '00091201')[0]!.values).toEqual(['orphan']);
    expect(byTag(ours, '00090010')[0]).toEqual({ tag: '00090010', vr: 'LO', values: ['ACME 1.0'] });
    const item = byTag(ours, '0040A730')[0]!.items!;
    expect(item).toHaveLength(3);
    expect(byTag(item[0]!, '00290001', 'NESTED CREATOR')[0]!.values).toEqual(['in item']);
    expect(byTag(item[0]!, '00281201')[0]!.bulkDataUri).toBe(`${BULK_DATA_BASE}/bulkdata/0040A730/0/00281201`);
    expect(item[1]).toEqual([]);
    expect(byTag(ours, '00080090')[0]!.names).toEqual([
      {
        Alphabetic: { FamilyName: 'Doe', GivenName: 'John', MiddleName: 'Quincy', NamePrefix: 'Dr.', NameSuffix: 'Jr.' },
        Ideographic: { FamilyName: 'ドウ', GivenName: 'ジョン' },
        Phonetic: { FamilyName: 'どう', GivenName: 'じょん' },
      },
      { Alphabetic: { FamilyName: 'Roe', MiddleName: 'Ann' } },
    ]);
    expect(byTag(ours, '00080008')[0]!.values).toEqual(['ORIGINAL', '', 'PRIMARY', 'AXIAL']);
    expect(byTag(ours, '00081030')[0]!.values).toEqual([`Knee & ankle <left> "quoted" 'single'`]);
  });

  it('declares UTF-8, the schema namespace and xml:space="preserve" on its root', () => {
    const xml = toNativeDicomXml(dicomJsonOf(path.join(FIXTURES, 'explicit-le.dcm')));
    expect(xml.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n')).toBe(true);
    expect(readDocument(xml).root.attributes).toEqual({ xmlns: 'http://dicom.nema.org/PS3.19/models/NativeDICOM', 'xml:space': 'preserve' });
  });

  it('leaves out group lengths and keywords the dictionary does not know, and puts attributes in tag order', () => {
    const json: DicomJson = {
      '00280008': { vr: 'IS', Value: [1] },
      '00100000': { vr: 'UL', Value: [12] },
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'A^B' }] },
      '00100011': { vr: 'LO', Value: ['not in PS3.6'] },
    };
    expect(readDocument(toNativeDicomXml(json)).attributes).toEqual([
      { tag: '00100010', vr: 'PN', keyword: 'PatientName', names: [{ Alphabetic: { FamilyName: 'A', GivenName: 'B' } }] },
      { tag: '00100011', vr: 'LO', values: ['not in PS3.6'] },
      { tag: '00280008', vr: 'IS', keyword: 'NumberOfFrames', values: ['1'] },
    ]);
  });

  it('keeps name components past the fifth in the suffix rather than lose them', () => {
    const json: DicomJson = { '00100010': { vr: 'PN', Value: [{ Alphabetic: 'A^B^C^D^E^F^G' }] } };
    expect(readDocument(toNativeDicomXml(json)).attributes[0]!.names).toEqual([
      { Alphabetic: { FamilyName: 'A', GivenName: 'B', MiddleName: 'C', NamePrefix: 'D', NameSuffix: 'E^F^G' } },
    ]);
  });

  describe('hostile text', () => {
    const UNSAFE = 'a < b && c > d "q" \'s\' ]]> <!-- --> <![CDATA[x]]> &amp; &#0;';
    const CONTROLS = 'tab\tlf\ncr\rcrlf\r\nnul\u0000bel\u0007esc\u001bus\u001fdel\u007f';
    const NON_ASCII = 'Müller — 王小东 홍길동 😀 \u0085\u00a0\u2028';
    const NOT_CHARACTERS = 'fffe\ufffe ffff\uffff lone\ud800high lone\udc00low';
    const json: DicomJson = {
      '00081030': { vr: 'LO', Value: [UNSAFE, CONTROLS] },
      '00204000': { vr: 'LT', Value: [NON_ASCII + NOT_CHARACTERS] },
      '00100010': { vr: 'PN', Value: [{ Alphabetic: 'O<Brien^A&B', Ideographic: '王^\u001b$B', Phonetic: '"x"^\'y\'' }, null] },
      '00090010': { vr: 'LO', Value: [`Creator "<&>" '\t\n\r'`] },
      '00091001': { vr: 'LO', Value: ['private'] },
      '00420011': { vr: 'OB', BulkDataURI: 'https://pacs.example/a?x=1&y="2"<3>' },
      '00431001': { vr: '<"', Value: ['hostile VR'] },
    };

    it('is well-formed XML 1.0: every character allowed, no reference to one that is not', () => {
      const xml = toNativeDicomXml(json);
      readDocument(xml);
      // XML 1.0 §2.2 Char; fast-xml-parser's validator does not check characters, so this does.
      expect(xml).toMatch(/^[\t\n\r\u0020-\ud7ff\ue000-\ufffd\u{10000}-\u{10ffff}]*$/u);
      const references = [...xml.matchAll(/&#(x[0-9a-f]+|[0-9]+);/gi)].map((m) => Number(m[1]!.startsWith('x') ? `0${m[1]}` : m[1]));
      expect(references.filter((c) => !(c === 9 || c === 10 || c === 13 || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || c >= 0x10000))).toEqual([]);
    });

    it('reads back to the values given, with what XML cannot carry as U+FFFD', () => {
      const { attributes } = readDocument(toNativeDicomXml(json));
      const byTag = (tag: string) => attributes.find((a) => a.tag === tag)!;
      expect(byTag('00081030').values).toEqual([UNSAFE, CONTROLS.replace(/[\u0000\u0007\u001b\u001f]/g, '\ufffd')]);
      expect(byTag('00204000').values).toEqual([`${NON_ASCII}fffe\ufffd ffff\ufffd lone\ufffdhigh lone\ufffdlow`]);
      expect(byTag('00100010').names).toEqual([
        {
          Alphabetic: { FamilyName: 'O<Brien', GivenName: 'A&B' },
          Ideographic: { FamilyName: '王', GivenName: '\ufffd$B' },
          Phonetic: { FamilyName: '"x"', GivenName: "'y'" },
        },
        {},
      ]);
      expect(byTag('00090001')).toMatchObject({ privateCreator: `Creator "<&>" '\t\n\r'`, values: ['private'] });
      expect(byTag('00420011').bulkDataUri).toBe('https://pacs.example/a?x=1&y="2"<3>');
      expect(byTag('00431001').vr).toBe('<"');
    });
  });
});
