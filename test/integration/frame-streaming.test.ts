import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { greyImage, SopClass } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * Frames and bulk data stream from the store in chunks: four clients fetching a 200 MB frame at once must not make
 * the server hold four copies of it (before, they took it from about 0.2 to 1 GB and more).
 */

const SIDE = 10_000; // 10,000² samples of 16 bits: a 200 MB frame
const FRAME_BYTES = SIDE * SIDE * 2;
/** What streaming four of them may add to the server's peak memory: well under one copy of the frame. */
const MAX_GROWTH = 150 * 1024 * 1024;

const studyUID = newUid();
const seriesUID = newUid();
const sopInstanceUID = newUid();
const base = `/studies/${studyUID}/series/${seriesUID}/instances/${sopInstanceUID}`;
let pixels: Buffer;
let server: RunningServer;

/** A native one-frame CR whose 32-bit words all differ, so that a misplaced chunk changes the checksum. */
function largeInstance(): Buffer {
  pixels = Buffer.allocUnsafe(FRAME_BYTES);
  for (let at = 0; at < FRAME_BYTES; at += 4) pixels.writeUInt32LE((at * 2654435761) >>> 0, at);
  return greyImage({
    sopClassUID: SopClass.CR,
    studyUID,
    seriesUID,
    sopInstanceUID,
    modality: 'CR',
    patientName: 'Large^Frame',
    side: SIDE,
    bitsAllocated: 16,
    transferSyntaxUID: '1.2.840.10008.1.2.1',
    pixels,
  });
}

/** Peak and current resident memory of the server process (VmHWM, VmRSS), in bytes. */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { peak: kb('VmHWM'), now: kb('VmRSS') };
}

beforeAll(async () => {
  server = await startServer();
  const response = await stow(server.dicomweb, [largeInstance()]);
  expect(response.status, await response.clone().text()).toBe(200);
}, 300_000);
afterAll(async () => {
  await server?.stop();
});

describe('frame streaming', () => {
  it('sends a 200 MB frame to four clients at once, bytes exact, without holding it in memory', async () => {
    const pid = server.process.pid!;
    // Start the peak afresh (proc(5) clear_refs "5"), so that what the upload took is not counted.
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    const before = memoryOf(pid).now;
    const expected = createHash('sha256').update(pixels).digest('hex');
    const frame = async () => {
      const response = await adminFetch(`${server.dicomweb}${base}/frames/1`, { headers: { Accept: 'multipart/related; type="application/octet-stream"; transfer-syntax=*' } });
      expect(response.status).toBe(200);
      const parts = await readMultipartResponse(response);
      expect(parts).toHaveLength(1);
      return createHash('sha256').update(parts[0]!.body).digest('hex');
    };
    const bulk = async () => {
      const response = await adminFetch(`${server.dicomweb}${base}/bulkdata/7FE00010`, { headers: { Accept: 'application/octet-stream' } });
      expect(response.status).toBe(200);
      const hash = createHash('sha256');
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) hash.update(chunk);
      return hash.digest('hex');
    };
    const hashes = await Promise.all([frame(), frame(), frame(), bulk()]);
    expect(hashes).toEqual([expected, expected, expected, expected]);
    const growth = memoryOf(pid).peak - before;
    console.log(`frame streaming: server peak grew by ${(growth / 1024 ** 2).toFixed(0)} MB over ${(before / 1024 ** 2).toFixed(0)} MB`);
    expect(growth).toBeLessThan(MAX_GROWTH);
  }, 300_000);
});
