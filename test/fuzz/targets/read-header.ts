import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { DicomParseError } from '../../../src/dicom/parse.js';
import { UidError } from '../../../src/dicom/uid.js';
import { readInstanceHeader } from '../../../src/ingest/read-header.js';
import { TooLarge } from '../../../src/ingest/spool.js';
import { refusesOnlyWith, type Target } from '../harness.js';
import { mutatedPart10 } from '../mutations.js';

type Input = { bytes: Buffer; head: number };

/** Small, so that a deflated data set inflating past it is reached by a seed (a 16 MB bomb is not needed). */
const MAX_INSTANCE_BYTES = 4 * 1024 * 1024;

/**
 * Ingest's header reader on a spooled file: the first bytes kept in memory (`head`, of any length), the rest read
 * from the file as the parser asks for more, then frames and DICOM JSON.
 */
export const readHeader: Target<Input> = {
  name: 'read-header',
  extension: '.json',
  async open() {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-fuzz-header-'));
    let n = 0;
    return {
      arbitrary: fc
        .tuple(mutatedPart10(), fc.oneof(fc.constant(256 * 1024), fc.nat({ max: 4096 }), fc.double({ min: 0, max: 1, noNaN: true })))
        .map(([bytes, head]) => ({ bytes, head: head < 1 ? Math.floor(head * bytes.length) : head })),
      async check({ bytes, head }) {
        const file = path.join(dir, `${n++ % 4}.dcm`);
        await fs.writeFile(file, bytes);
        const spooled = { path: file, size: bytes.length, sha256: '', head: bytes.subarray(0, head), written: Promise.resolve(), synced: Promise.resolve() };
        await refusesOnlyWith([DicomParseError, UidError, TooLarge], () => readInstanceHeader(spooled, MAX_INSTANCE_BYTES));
      },
      encode: ({ bytes, head }) => Buffer.from(JSON.stringify({ head, bytes: bytes.toString('base64') })),
      decode(file) {
        const { head, bytes } = JSON.parse(file.toString()) as { head: number; bytes: string };
        return { head, bytes: Buffer.from(bytes, 'base64') };
      },
      close: () => fs.rm(dir, { recursive: true, force: true }),
    };
  },
};
