import { DicomParseError } from './parse-error.js';

/**
 * A quick walk over the element headers of a data set, before dicom-parser reads it: it refuses what dicom-parser
 * would read without complaint (tags out of order, delimiters with a length, items outside a sequence) and stops a
 * run of millions of elements (100 MB of zeros read as (0000,0000) elements) at the first of them, in microseconds.
 * Where the bytes end or a structure it does not follow begins, it stops quietly: the parser reports those.
 */

/**
 * Elements and items one header may hold. dicom-parser reads them synchronously at about 6 µs each, so this bounds
 * the stall to about 1.5 s; an enhanced multi-frame of 2,000 frames or a large RT Structure Set holds 100,000-150,000.
 */
export const MAX_ELEMENTS = 250_000;

export type Encoding = { explicitVr: boolean; littleEndian: boolean };

/** The walk gave up: the bytes end before `atLeast`, or (without it) what follows is for the parser to judge. */
class Stop extends Error {
  constructor(readonly atLeast?: number) {
    super();
  }
}

/** Where the walk of the top level ended: at its pixel data, at the end of the bytes, or before. */
export type Walked = { stopped: 'pixel-data' | 'end' | 'gave-up' } | { stopped: 'ran-out'; atLeast: number };

/** More elements than MAX_ELEMENTS: a resource limit (ingest answers 0xA700) rather than a malformed file. */
export class TooManyElements extends DicomParseError {
  constructor() {
    super(`the data set holds more than ${MAX_ELEMENTS.toLocaleString('en')} elements`);
  }
}

const ITEM = 0xfffee000;
const ITEM_DELIMITER = 0xfffee00d;
const SEQUENCE_DELIMITER = 0xfffee0dd;
const UNDEFINED = 0xffffffff;
const PIXEL_DATA = 0x7fe00010;
const IMPLICIT_LE: Encoding = { explicitVr: false, littleEndian: true };
/** As deep as the parser goes (parse.ts MAX_NESTING); it names deeper nesting itself. */
const MAX_DEPTH = 64;
// dicom-parser's own list of VRs with a 4-byte length: the walk must read lengths as the parser will.
export const LONG_VRS = new Set(['OB', 'OD', 'OL', 'OW', 'SQ', 'OF', 'UC', 'UR', 'UT', 'UN']);

/**
 * Walks the data set of `bytes` from `start` up to the top-level pixel data; throws DicomParseError or
 * TooManyElements. On a prefix, 'ran-out' and 'end' say a longer one is needed before parsing is worth it.
 */
export function walkDataSet(bytes: Buffer, start: number, encoding: Encoding): Walked {
  try {
    const walk = new Walk(bytes);
    walk.dataSet(start, bytes.length, 'top', 0, encoding);
    return { stopped: walk.reachedPixelData ? 'pixel-data' : 'end' };
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
    return e.atLeast === undefined ? { stopped: 'gave-up' } : { stopped: 'ran-out', atLeast: e.atLeast };
  }
}

class Walk {
  private counted = 0;
  reachedPixelData = false;

  constructor(private readonly bytes: Buffer) {}

  /** A walk of millions of elements or items is cut short here, before the parser builds an object for each. */
  private count(): void {
    if (++this.counted > MAX_ELEMENTS) throw new TooManyElements();
  }

  private need(end: number): void {
    if (end > this.bytes.length) throw new Stop(end);
  }

  private u16(at: number, e: Encoding): number {
    this.need(at + 2);
    return e.littleEndian ? this.bytes.readUInt16LE(at) : this.bytes.readUInt16BE(at);
  }

  private u32(at: number, e: Encoding): number {
    this.need(at + 4);
    return e.littleEndian ? this.bytes.readUInt32LE(at) : this.bytes.readUInt32BE(at);
  }

  private tag(at: number, e: Encoding): number {
    return this.u16(at, e) * 0x10000 + this.u16(at + 2, e);
  }

  /**
   * The elements of a data set from `at` to `end`: the top level (ends at its pixel data), an item of defined
   * length (ends at `end`) or of undefined length (ends after its item delimiter). Returns where it ended.
   */
  dataSet(at: number, end: number, kind: 'top' | 'item' | 'open-item', depth: number, e: Encoding): number {
    let previous = -1;
    while (at < end) {
      const tag = this.tag(at, e);
      if (tag === ITEM_DELIMITER) {
        if (kind !== 'open-item') throw new DicomParseError(`an item delimiter (FFFE,E00D) at offset ${at} ends no item of undefined length`);
        this.zeroLength(at, 'an item delimiter (FFFE,E00D)', e);
        return at + 8;
      }
      if (tag >>> 16 === 0xfffe) throw new DicomParseError(`${tagName(tag)} at offset ${at} stands outside a sequence`);
      if (tag <= previous) {
        throw new DicomParseError(
          `${tagName(tag)} at offset ${at} follows ${tagName(previous)}: the tags of a data set ascend (PS3.5 7.1), so the bytes from here on are not part of it`,
        );
      }
      previous = tag;
      if (depth === 0 && tag === PIXEL_DATA) {
        this.reachedPixelData = true;
        return at;
      }
      this.count();
      at = this.element(at, tag, depth, e);
      // Past the end of the bytes: a prefix, or a file cut short, which the parser names.
      if (at > this.bytes.length) throw new Stop(at);
      if (at > end) throw new DicomParseError(`${tagName(tag)} runs past the end of the item that holds it`);
    }
    return at;
  }

  /** One element from its tag at `at`; returns where the next one begins. */
  private element(at: number, tag: number, depth: number, e: Encoding): number {
    let vr: string | undefined;
    let length: number;
    let valueAt: number;
    if (e.explicitVr) {
      this.need(at + 6);
      vr = this.bytes.toString('latin1', at + 4, at + 6);
      if (LONG_VRS.has(vr)) [length, valueAt] = [this.u32(at + 8, e), at + 12];
      else [length, valueAt] = [this.u16(at + 6, e), at + 8];
    } else {
      [length, valueAt] = [this.u32(at + 4, e), at + 8];
    }
    if (length === UNDEFINED) {
      if (tag === PIXEL_DATA) return this.fragments(valueAt, e);
      // As the parser reads them: SQ items in this encoding, UN items in Implicit VR, and in Implicit VR a value that opens with an item.
      if (vr === 'SQ' || (vr === undefined && this.opensSequence(valueAt, e))) return this.sequence(valueAt, Infinity, tag, depth, e);
      if (vr === 'UN') return this.sequence(valueAt, Infinity, tag, depth, IMPLICIT_LE);
      throw new Stop();
    }
    const end = valueAt + length;
    if (end > this.bytes.length) throw new Stop(end);
    const isPrivate = (tag >>> 16) % 2 === 1;
    if (vr === 'SQ' || (vr === undefined && !isPrivate && this.opensSequence(valueAt, e))) return this.sequence(valueAt, end, tag, depth, e);
    return end;
  }

  private opensSequence(at: number, e: Encoding): boolean {
    if (at + 4 > this.bytes.length) return false;
    const next = this.tag(at, e);
    return next === ITEM || next === SEQUENCE_DELIMITER;
  }

  /** The items of a sequence: up to `end` for a defined length, else up to its sequence delimiter. */
  private sequence(at: number, end: number, tag: number, depth: number, e: Encoding): number {
    if (depth >= MAX_DEPTH) throw new Stop(); // the parser names nesting that deep
    while (at < end) {
      const itemTag = this.tag(at, e);
      const length = this.u32(at + 4, e);
      if (itemTag === SEQUENCE_DELIMITER) {
        if (end !== Infinity) throw new DicomParseError(`sequence ${tagName(tag)} has a defined length and also a sequence delimiter (FFFE,E0DD) at offset ${at}`);
        this.zeroLength(at, 'a sequence delimiter (FFFE,E0DD)', e);
        return at + 8;
      }
      if (itemTag !== ITEM) throw new DicomParseError(`sequence ${tagName(tag)} holds ${tagName(itemTag)} at offset ${at} where an item (FFFE,E000) must begin`);
      this.count();
      if (length !== UNDEFINED && at + 8 + length > this.bytes.length) throw new Stop(at + 8 + length);
      at = length === UNDEFINED ? this.dataSet(at + 8, Infinity, 'open-item', depth + 1, e) : this.dataSet(at + 8, at + 8 + length, 'item', depth + 1, e);
      if (at > end) throw new DicomParseError(`an item of sequence ${tagName(tag)} runs past the end of the sequence`);
    }
    return at;
  }

  /** Encapsulated pixel data (PS3.5 A.4): items of defined length, then a sequence delimiter. */
  private fragments(at: number, e: Encoding): number {
    for (;;) {
      const tag = this.tag(at, e);
      const length = this.u32(at + 4, e);
      if (tag === SEQUENCE_DELIMITER) {
        this.zeroLength(at, 'a sequence delimiter (FFFE,E0DD)', e);
        return at + 8;
      }
      if (tag !== ITEM || length === UNDEFINED) throw new Stop();
      this.count();
      at += 8 + length;
    }
  }

  private zeroLength(at: number, what: string, e: Encoding): void {
    const length = this.u32(at + 4, e);
    if (length !== 0) throw new DicomParseError(`${what} at offset ${at} declares a length of ${length}; a delimiter has none (PS3.5 7.5)`);
  }
}

function tagName(tag: number): string {
  const hex = tag.toString(16).padStart(8, '0').toUpperCase();
  return `(${hex.slice(0, 4)},${hex.slice(4)})`;
}
