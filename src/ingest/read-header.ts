import fs from 'node:fs/promises';
import { frameRanges, numberOfFrames, type ByteReader, type FrameRange } from '../dicom/frames.js';
import { toDicomJson, type DicomJson } from '../dicom/json.js';
import { DicomParseError, InflateLimitExceeded, NeedMoreBytes, parsePart10, type ParsedHeader } from '../dicom/parse.js';
import { Tag } from '../dicom/tags.js';
import { frameTransferSyntax } from '../dicom/transfer-syntax.js';
import { formatBytes, TooLarge, type Spooled } from './spool.js';

const FIRST_READ = 256 * 1024;
/** A header (everything but pixel data) beyond this is not a medical image: refuse rather than buffer it. */
const MAX_HEADER_BYTES = 128 * 1024 * 1024;
/** A deflated data set is inflated whole in memory, so a few KB could ask for gigabytes: never past this. */
const MAX_INFLATED_BYTES = 512 * 1024 * 1024;

export type InstanceHeader = ParsedHeader & { frames: FrameRange[]; json: DicomJson };

/**
 * Reads what the index needs from a spooled file: parse once, up to the pixel data, and walk the frames.
 * `head` (the first bytes, kept while spooling) usually holds all of it; the file is opened only when not.
 */
export async function readInstanceHeader(spooled: Spooled, maxInstanceBytes: number): Promise<InstanceHeader> {
  const { size, head } = spooled;
  const maxInflatedBytes = Math.min(maxInstanceBytes, MAX_INFLATED_BYTES);
  let handle: fs.FileHandle | undefined;
  try {
    const reader: ByteReader = {
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
      try {
        const header = parsePart10(await reader.read(0, want), size, { maxInflatedBytes });
        const frames = await frameRanges(header, reader);
        const base = `studies/${header.studyInstanceUID}/series/${header.seriesInstanceUID}/instances/${header.sopInstanceUID}`;
        const json = toDicomJson(header.dataSet, { bulkDataBase: base });
        // Viewers rely on these two (DESIGN decision 3): frames count, and the syntax frames are served in.
        json[Tag.NumberOfFrames] ??= { vr: 'IS', Value: [numberOfFrames(header)] };
        if (header.pixelData) json[Tag.AvailableTransferSyntaxUID] = { vr: 'UI', Value: [frameTransferSyntax(header.transferSyntaxUID)] };
        return { ...header, frames, json };
      } catch (e) {
        if (e instanceof InflateLimitExceeded) {
          const limit = maxInflatedBytes < maxInstanceBytes ? 'the most this server inflates in memory' : 'the limit for one instance (PACS_MAX_INSTANCE_BYTES)';
          throw new TooLarge(e.limit, `the deflated data set inflates to more than ${formatBytes(e.limit)}, ${limit}; send it in an uncompressed transfer syntax`);
        }
        if (!(e instanceof NeedMoreBytes) || want >= size) throw e;
        if (want >= MAX_HEADER_BYTES) throw new DicomParseError(`the attributes before the pixel data exceed ${MAX_HEADER_BYTES} bytes`);
        want = Math.min(size, Math.max(e.atLeast, want * 2), MAX_HEADER_BYTES);
      }
    }
  } finally {
    await handle?.close();
  }
}
