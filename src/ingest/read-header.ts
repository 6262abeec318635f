import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { setImmediate } from 'node:timers/promises';
import { frameRanges, type ByteReader, type FrameRange } from '../dicom/frames.js';
import { InflateLimitExceeded, InflatingReader } from '../dicom/inflate.js';
import { toDicomJson, type BulkDataRanges, type DicomJson } from '../dicom/json.js';
import { DicomParseError, NeedMoreBytes, NeedsInflating, parsePart10, type ParsedHeader } from '../dicom/parse.js';
import { Tag, lookupTag } from '../dicom/tags.js';
import { frameTransferSyntax } from '../dicom/transfer-syntax.js';
import { MAX_ELEMENTS, TooManyElements } from '../dicom/walk.js';
import { formatBytes, TooLarge, type Spooled } from './spool.js';

const FIRST_READ = 256 * 1024;
/** A header (everything but pixel data) beyond this is not a medical image: refuse rather than buffer it. */
const MAX_HEADER_BYTES = 128 * 1024 * 1024;
/**
 * An inflated header is held in memory too, and it comes from a few KB sent: a smaller bound. Deflate is a rare
 * syntax, used for structured documents far below it.
 */
const MAX_INFLATED_HEADER_BYTES = 64 * 1024 * 1024;

export type InstanceHeader = ParsedHeader & { frames: FrameRange[]; bulkData: BulkDataRanges; json: DicomJson };

/**
 * Reads what the index needs from a spooled file: parse once, up to the pixel data, and walk the frames; where
 * every frame and every other bulk data value lies is recorded, so that reads never parse the file again.
 * `head` (the first bytes, kept while spooling) usually holds all of it; the file is opened only when not.
 * A deflated data set is inflated as a stream off the event loop, counted against `maxInstanceBytes` to its end,
 * and only the part before its pixel data is held.
 */
export async function readInstanceHeader(spooled: Spooled, maxInstanceBytes: number): Promise<InstanceHeader> {
  const { size, head } = spooled;
  let handle: fs.FileHandle | undefined;
  let inflating: InflatingReader | undefined;
  try {
    const file: ByteReader = {
      size,
      async read(offset, length) {
        if (offset + length <= head.length) return head.subarray(offset, offset + length);
        if (!handle) {
          await spooled.written;
          handle = await fs.open(spooled.path, 'r');
        }
        const buffer = Buffer.allocUnsafe(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        return buffer.subarray(0, bytesRead);
      },
    };
    let want = Math.min(size, Math.max(head.length, FIRST_READ));
    for (;;) {
      const maxHeader = inflating ? MAX_INFLATED_HEADER_BYTES : MAX_HEADER_BYTES;
      let total: number | undefined = size;
      let bytes: Buffer | undefined;
      try {
        bytes = inflating ? await inflating.prefix(want) : await file.read(0, want);
        total = inflating ? inflating.size : size;
        const parsed = parsePart10(bytes, total ?? Number.MAX_SAFE_INTEGER, { deflated: inflating ? 'inflated' : 'ask' });
        // The rest of an inflated data set is inflated too, to bound and check it, but not held.
        const header = inflating ? { ...parsed, size: await inflating.drain() } : parsed;
        // Parsing and converting a large header are each synchronous: let other requests in between them.
        await setImmediate();
        const frames = await frameRanges(header, file);
        const base = `studies/${header.studyInstanceUID}/series/${header.seriesInstanceUID}/instances/${header.sopInstanceUID}`;
        const bulkData: BulkDataRanges = {};
        const json = toDicomJson(header.dataSet, { bulkDataBase: base, bulkDataRanges: bulkData });
        await setImmediate();
        refuseNulInside(json);
        // Viewers ask for frames in the syntax they are served in (DESIGN decision 3); the index counts them.
        if (header.pixelData) json[Tag.AvailableTransferSyntaxUID] = { vr: 'UI', Value: [frameTransferSyntax(header.transferSyntaxUID)] };
        return { ...header, frames, bulkData, json };
      } catch (e) {
        if (e instanceof NeedsInflating && !inflating) {
          await spooled.written;
          inflating = new InflatingReader(await file.read(0, e.offset), createReadStream(spooled.path, { start: e.offset }), maxInstanceBytes);
          continue;
        }
        if (e instanceof InflateLimitExceeded) {
          throw new TooLarge(e.limit, `the deflated data set inflates to more than ${formatBytes(e.limit)}, the limit for one instance (PACS_MAX_INSTANCE_BYTES); send it in an uncompressed transfer syntax`);
        }
        if (e instanceof TooManyElements) throw new TooLarge(MAX_ELEMENTS, `${e.message}, more than this server reads in one header`);
        if (!(e instanceof NeedMoreBytes) || !bytes || bytes.length >= (total ?? Number.POSITIVE_INFINITY)) throw e;
        if (want >= maxHeader) {
          const held = inflating ? 'inflate to' : 'take';
          throw new TooLarge(maxHeader, `the attributes before the pixel data ${held} more than ${formatBytes(maxHeader)}, the most this server holds in memory to read a header`);
        }
        want = Math.min(total ?? Number.POSITIVE_INFINITY, Math.max(e.atLeast, want * 2), maxHeader);
      }
    }
  } finally {
    await inflating?.close();
    await handle?.close();
  }
}

/**
 * A NUL inside a text value (trailing padding is gone by now) is cut there by some readers and refused by
 * Postgres: the index and the file would disagree, so the instance is refused, naming the attribute.
 */
function refuseNulInside(json: DicomJson): void {
  for (const [tag, attribute] of Object.entries(json)) {
    for (const value of attribute.Value ?? []) {
      if (attribute.vr === 'SQ') refuseNulInside(value as DicomJson);
      const texts = typeof value === 'string' ? [value] : attribute.vr === 'PN' && value ? Object.values(value as Record<string, string>) : [];
      const bad = texts.find((text) => text.includes('\0'));
      if (bad !== undefined) {
        const name = `${lookupTag(tag)?.keyword ?? 'attribute'} (${tag.slice(0, 4)},${tag.slice(4)})`;
        throw new DicomParseError(`${name} holds a NUL byte inside its value "${bad.slice(0, 64).replaceAll('\0', '\\0')}"; NUL may only pad a value's end`);
      }
    }
  }
}
