import { tagHeader } from '../dicom/write.js';

/**
 * Command sets (PS3.7 E.1: group 0000, always Implicit VR Little Endian) read and written by this server. dcmjs-dimse
 * goes through dcmjs's general-purpose codec for each of them, which took about a quarter of a millisecond a message:
 * as much as spooling the instance a C-STORE carries.
 */

type CommandVr = 'UL' | 'US' | 'UI' | 'AE' | 'LO';

/** The command elements a C-ECHO, C-STORE, C-FIND, C-MOVE or C-GET carries, by the keyword dcmjs-dimse names them with. */
const ELEMENTS: Record<string, { element: number; vr: CommandVr }> = {
  CommandGroupLength: { element: 0x0000, vr: 'UL' },
  AffectedSOPClassUID: { element: 0x0002, vr: 'UI' },
  RequestedSOPClassUID: { element: 0x0003, vr: 'UI' },
  CommandField: { element: 0x0100, vr: 'US' },
  MessageID: { element: 0x0110, vr: 'US' },
  MessageIDBeingRespondedTo: { element: 0x0120, vr: 'US' },
  MoveDestination: { element: 0x0600, vr: 'AE' },
  Priority: { element: 0x0700, vr: 'US' },
  CommandDataSetType: { element: 0x0800, vr: 'US' },
  Status: { element: 0x0900, vr: 'US' },
  ErrorComment: { element: 0x0902, vr: 'LO' },
  ErrorID: { element: 0x0903, vr: 'US' },
  AffectedSOPInstanceUID: { element: 0x1000, vr: 'UI' },
  RequestedSOPInstanceUID: { element: 0x1001, vr: 'UI' },
  NumberOfRemainingSuboperations: { element: 0x1020, vr: 'US' },
  NumberOfCompletedSuboperations: { element: 0x1021, vr: 'US' },
  NumberOfFailedSuboperations: { element: 0x1022, vr: 'US' },
  NumberOfWarningSuboperations: { element: 0x1023, vr: 'US' },
  MoveOriginatorApplicationEntityTitle: { element: 0x1030, vr: 'AE' },
  MoveOriginatorMessageID: { element: 0x1031, vr: 'US' },
};
const BY_ELEMENT = new Map(Object.entries(ELEMENTS).map(([keyword, { element, vr }]) => [element, { keyword, vr }]));

/** A command's elements as dcmjs-dimse holds them: numbers, and strings without their padding. */
export type CommandElements = Record<string, unknown>;

/**
 * The command set of `elements`, with its group length, as PS3.7 E.1 lays it out; undefined when it holds an element
 * this codec does not know (the caller then takes dcmjs's way).
 */
export function encodeCommandSet(elements: CommandElements): Buffer | undefined {
  const parts: Buffer[] = [];
  // dcmjs keeps a `_vrMap` beside the elements it read; the group length is computed anew.
  const present = Object.entries(elements).filter(([keyword, value]) => keyword !== 'CommandGroupLength' && keyword !== '_vrMap' && value !== undefined && value !== null);
  const known = present.map(([keyword, value]) => ({ definition: ELEMENTS[keyword], value }));
  if (known.some(({ definition }) => definition === undefined)) return undefined;
  known.sort((a, b) => a.definition!.element - b.definition!.element);
  for (const { definition, value } of known) {
    const bytes = valueBytes(definition!.vr, value);
    if (bytes === undefined) return undefined;
    parts.push(tagHeader(0x0000, definition!.element, bytes.length), bytes);
  }
  const length = parts.reduce((sum, part) => sum + part.length, 0);
  const groupLength = Buffer.alloc(4);
  groupLength.writeUInt32LE(length);
  return Buffer.concat([tagHeader(0x0000, 0x0000, 4), groupLength, ...parts], 12 + length);
}

/** A command set's elements; undefined when `bytes` is not one this codec reads (another group, an unknown element). */
export function decodeCommandSet(bytes: Buffer): CommandElements | undefined {
  if (bytes.length === 0) return undefined;
  const elements: CommandElements = {};
  for (let at = 0; at < bytes.length; ) {
    if (at + 8 > bytes.length || bytes.readUInt16LE(at) !== 0) return undefined;
    const definition = BY_ELEMENT.get(bytes.readUInt16LE(at + 2));
    const length = bytes.readUInt32LE(at + 4);
    const value = bytes.subarray(at + 8, at + 8 + length);
    if (definition === undefined || value.length !== length || length === 0) return undefined;
    const read = readValue(definition.vr, value);
    if (read === undefined) return undefined;
    elements[definition.keyword] = read;
    at += 8 + length;
  }
  return elements;
}

function valueBytes(vr: CommandVr, value: unknown): Buffer | undefined {
  if (vr === 'US' || vr === 'UL') {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > (vr === 'US' ? 0xffff : 0xffffffff)) return undefined;
    const bytes = Buffer.alloc(vr === 'US' ? 2 : 4);
    if (vr === 'US') bytes.writeUInt16LE(value);
    else bytes.writeUInt32LE(value);
    return bytes;
  }
  if (typeof value !== 'string') return undefined;
  const text = Buffer.from(value, 'latin1');
  // PS3.5 6.2: UI is padded with NUL, the text VRs with a space, to an even length.
  return text.length % 2 === 0 ? text : Buffer.concat([text, Buffer.from(vr === 'UI' ? [0] : [0x20])]);
}

function readValue(vr: CommandVr, value: Buffer): number | string | undefined {
  if (vr === 'US') return value.length === 2 ? value.readUInt16LE() : undefined;
  if (vr === 'UL') return value.length === 4 ? value.readUInt32LE() : undefined;
  const text = value.toString('latin1');
  return vr === 'UI' ? text.replace(/\0+$/, '') : text.replace(/[ \0]+$/, '').replace(/^ +/, '');
}
