import type { DicomJson, JsonAttribute } from './json.js';
import { isPrivateTag, lookupTag } from './tags.js';

/** The default namespace of the normative schema (PS3.19 A.1.6): a client validating against it needs it on the root. */
const NATIVE_DICOM_MODEL_NAMESPACE = 'http://dicom.nema.org/PS3.19/models/NativeDICOM';
const NAME_GROUPS = ['Alphabetic', 'Ideographic', 'Phonetic'] as const;
const NAME_COMPONENTS = ['FamilyName', 'GivenName', 'MiddleName', 'NamePrefix', 'NameSuffix'] as const;
/** A PN value of DICOM JSON (PS3.18 F.2.2). */
type PersonNameGroups = Partial<Record<(typeof NAME_GROUPS)[number], string>>;

/**
 * What XML 1.0 cannot carry (§2.2 Char: C0 controls but tab, LF and CR; U+FFFE, U+FFFF; unpaired surrogates), which
 * not even a character reference may name.
 */
const NOT_XML_CHAR = '\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\uFFFE\\uFFFF';
const LONE_SURROGATE = '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
/** CR too: a parser reads it as LF unless it is a reference (XML 1.0 §2.11). */
const TEXT_ESCAPED = new RegExp(`[&<>\\r${NOT_XML_CHAR}]|${LONE_SURROGATE}`, 'g');
/** Attribute values also lose tab and LF to a space (XML 1.0 §3.3.3) unless they are references. */
const ATTRIBUTE_ESCAPED = new RegExp(`[&<>"'\\t\\n\\r${NOT_XML_CHAR}]|${LONE_SURROGATE}`, 'g');
/** Most values need no escaping: found without lookarounds (any surrogate, paired or not, takes the slow path). */
const MAY_NEED_ESCAPING = new RegExp(`[&<>"'\\t\\n\\r${NOT_XML_CHAR}\\uD800-\\uDFFF]`);
const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&apos;',
  '\t': '&#9;',
  '\n': '&#10;',
  '\r': '&#13;',
};
/** A character XML cannot carry becomes U+FFFD, as an undecodable byte does: the document stays well-formed and the gap visible. */
const escapeChar = (char: string) => ESCAPES[char] ?? '\uFFFD';

/**
 * One instance's DICOM JSON (PS3.18 F.2) as a Native DICOM Model document (PS3.19 A.1), the body of a
 * `multipart/related; type="application/dicom+xml"` part of WADO-RS metadata (PS3.18 10.4).
 * BulkDataURI becomes `<BulkData uri>` as given (relative or absolute), InlineBinary stays base64. A private data
 * element (gggg,xxee) is written as tag gggg00ee with the value of its Private Creator (gggg,00xx) in `privateCreator`;
 * the Private Creator elements themselves are written too, as dcmtk's dcm2xml does; a private element whose creator
 * is missing keeps its own tag and has no `privateCreator`, so it cannot pass for a creator or another block's element.
 * Text XML cannot carry is replaced by U+FFFD (see NOT_XML_CHAR).
 */
export function toNativeDicomXml(json: DicomJson): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<NativeDicomModel xmlns="${NATIVE_DICOM_MODEL_NAMESPACE}" xml:space="preserve">\n${dataSetXml(json)}</NativeDicomModel>\n`;
}

function dataSetXml(json: DicomJson): string {
  let xml = '';
  // Stored JSON has attributes added after the parsed ones (AvailableTransferSyntaxUID at ingest): a data set is in tag order.
  for (const tag of Object.keys(json).sort()) {
    // PS3.19 A.1.1: group lengths are never included.
    if (tag.endsWith('0000')) continue;
    xml += attributeXml(tag, json[tag]!, json);
  }
  return xml;
}

function attributeXml(tag: string, attribute: JsonAttribute, dataSet: DicomJson): string {
  // The VR is the file's own two bytes, whatever they are.
  const vr = escapeAttribute(attribute.vr);
  const creator = privateCreatorOf(tag, dataSet);
  let xml: string;
  if (creator !== undefined) xml = `<DicomAttribute tag="${tag.slice(0, 4)}00${tag.slice(6)}" vr="${vr}" privateCreator="${escapeAttribute(creator)}"`;
  else {
    xml = `<DicomAttribute tag="${tag}" vr="${vr}"`;
    const keyword = isPrivateTag(tag) ? undefined : lookupTag(tag)?.keyword;
    if (keyword) xml += ` keyword="${keyword}"`;
  }
  xml += '>\n';

  if (attribute.BulkDataURI !== undefined) xml += `<BulkData uri="${escapeAttribute(attribute.BulkDataURI)}"/>\n`;
  else if (attribute.InlineBinary !== undefined) xml += `<InlineBinary>${escapeText(attribute.InlineBinary)}</InlineBinary>\n`;
  else if (attribute.Value) {
    const values = attribute.Value;
    for (let i = 0; i < values.length; i++) {
      const number = i + 1;
      const value = values[i];
      if (attribute.vr === 'SQ') xml += `<Item number="${number}">\n${dataSetXml((value ?? {}) as DicomJson)}</Item>\n`;
      else if (attribute.vr === 'PN') xml += personNameXml(number, value as PersonNameGroups | null);
      else xml += `<Value number="${number}">${value === null || value === undefined ? '' : escapeText(String(value))}</Value>\n`;
    }
  }
  return xml + '</DicomAttribute>\n';
}

/** The Private Creator's value for a private data element (gggg,xxee: its block xx reserved by gggg,00xx), if it has one. */
function privateCreatorOf(tag: string, dataSet: DicomJson): string | undefined {
  if (!isPrivateTag(tag) || (tag[4] === '0' && tag[5] === '0')) return undefined;
  const creator = dataSet[`${tag.slice(0, 4)}00${tag.slice(4, 6)}`]?.Value?.[0];
  return typeof creator === 'string' && creator !== '' ? creator : undefined;
}

function personNameXml(number: number, name: PersonNameGroups | null): string {
  let xml = `<PersonName number="${number}">\n`;
  for (const group of NAME_GROUPS) {
    const text = name?.[group];
    if (!text) continue;
    const parts = text.split('^');
    // A sixth component and beyond break PS3.5 6.2; kept in the suffix rather than lost.
    if (parts.length > NAME_COMPONENTS.length) parts.splice(NAME_COMPONENTS.length - 1, Infinity, parts.slice(NAME_COMPONENTS.length - 1).join('^'));
    xml += `<${group}>\n`;
    for (let i = 0; i < parts.length; i++) {
      if (parts[i]) xml += `<${NAME_COMPONENTS[i]}>${escapeText(parts[i]!)}</${NAME_COMPONENTS[i]}>\n`;
    }
    xml += `</${group}>\n`;
  }
  return xml + '</PersonName>\n';
}

function escapeText(text: string): string {
  return MAY_NEED_ESCAPING.test(text) ? text.replace(TEXT_ESCAPED, escapeChar) : text;
}

function escapeAttribute(text: string): string {
  return MAY_NEED_ESCAPING.test(text) ? text.replace(ATTRIBUTE_ESCAPED, escapeChar) : text;
}
