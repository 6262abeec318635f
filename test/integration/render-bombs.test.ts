import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { greyImage } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * Render bombs: a 3 MB JPEG of 16000×16000 pixels, and JPEG 2000 / HTJ2K codestreams as large, are within every
 * upload limit, but decoding them whole takes a GB or more each. Thumbnails and viewport renderings decode only
 * the resolution they show, renderings wait for memory rather than pile up, and the event loop stays free:
 * /healthz answers while they run. (Before: six at once took 2.5 GB and held /healthz up for 13.7 s.)
 */

const SIDE = 16_000;
/** Grey levels of the four quadrants (top left, top right, bottom left, bottom right). */
const LEVELS = [30, 90, 160, 230] as const;
/** Most the server's peak memory may grow while they all run; each whole 16000² decode alone needs about 1 GB. */
const MAX_GROWTH = 1536 * 1024 ** 2;
/** What "answers promptly" means on a loaded two-core test machine; before, /healthz waited 13.7 s. */
const HEALTHZ_BOUND_MS = 2_000;

const UID = '1.2.826.0.1.3680043.9.7433.1010';
const instances = {
  jpeg: { studyUID: `${UID}.1`, seriesUID: `${UID}.1.1`, sopInstanceUID: `${UID}.1.1.1`, syntax: '1.2.840.10008.1.2.4.50' },
  htj2k: { studyUID: `${UID}.2`, seriesUID: `${UID}.2.1`, sopInstanceUID: `${UID}.2.1.1`, syntax: '1.2.840.10008.1.2.4.201' },
  j2k: { studyUID: `${UID}.3`, seriesUID: `${UID}.3.1`, sopInstanceUID: `${UID}.3.1.1`, syntax: '1.2.840.10008.1.2.4.90' },
};
type Which = keyof typeof instances;
const urlOf = (which: Which) => {
  const i = instances[which];
  return `/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`;
};

/** 16000² 8-bit grey samples in four flat quadrants. */
function quadrants(): Buffer {
  const pixels = Buffer.alloc(SIDE * SIDE);
  const half = SIDE / 2;
  for (let y = 0; y < SIDE; y++) {
    const row = y * SIDE;
    pixels.fill(LEVELS[y < half ? 0 : 2], row, row + half);
    pixels.fill(LEVELS[y < half ? 1 : 3], row + half, row + SIDE);
  }
  return pixels;
}

/** A MONOCHROME2 instance of 8-bit samples; the window maps each stored value to the same grey level. */
function instance(which: Which, encapsulated?: Buffer, native?: Buffer): Buffer {
  const { studyUID, seriesUID, sopInstanceUID, syntax } = instances[which];
  return greyImage({
    sopClassUID: '1.2.840.10008.5.1.4.1.1.7',
    studyUID,
    seriesUID,
    sopInstanceUID,
    modality: 'OT',
    patientName: 'Render^Bomb',
    side: SIDE,
    bitsAllocated: 8,
    transferSyntaxUID: native ? '1.2.840.10008.1.2.1' : syntax,
    pixels: native,
    frames: encapsulated && [encapsulated],
    extra: [
      { tag: '00281050', vr: 'DS', value: '128' },
      { tag: '00281051', vr: 'DS', value: '256' },
    ],
  });
}

async function jpegInstance(pixels: Buffer): Promise<Buffer> {
  const jpeg = await sharp(pixels, { raw: { width: SIDE, height: SIDE, channels: 1 }, limitInputPixels: false }).toColourspace('b-w').jpeg({ quality: 80 }).toBuffer();
  return instance('jpeg', jpeg);
}

/** HTJ2K: OpenJPH, the codec the server decodes it with, is the one encoder at hand. */
async function htj2kInstance(pixels: Buffer): Promise<Buffer> {
  type Encoder = { getDecodedBuffer(info: object): Uint8Array; getEncodedBuffer(): Uint8Array; encode(): void; setQuality(reversible: boolean, step: number): void; delete(): void };
  const require = createRequire(import.meta.url);
  const openjph = await (require('@cornerstonejs/codec-openjph') as () => Promise<{ HTJ2KEncoder: new () => Encoder }>)();
  const encoder = new openjph.HTJ2KEncoder();
  encoder.getDecodedBuffer({ width: SIDE, height: SIDE, bitsPerSample: 8, componentCount: 1, isSigned: false, isUsingColorTransform: false }).set(pixels);
  encoder.setQuality(true, 0);
  encoder.encode();
  const codestream = Buffer.from(encoder.getEncodedBuffer());
  encoder.delete();
  return instance('htj2k', codestream);
}

/** JPEG 2000 by GDCM (OpenJPEG); it takes half a minute, so it is kept in the temporary folder for the next run. */
async function j2kInstance(pixels: Buffer): Promise<Buffer> {
  const cached = path.join(os.tmpdir(), 'pacs-render-bomb-j2k-16000-v1.dcm');
  if (!existsSync(cached)) {
    const native = path.join(os.tmpdir(), `pacs-render-bomb-native-${process.pid}.dcm`);
    writeFileSync(native, instance('j2k', undefined, pixels));
    await promisify(execFile)('gdcmconv', ['--j2k', native, `${cached}.${process.pid}`]);
    await promisify(execFile)('mv', [`${cached}.${process.pid}`, cached]);
    await promisify(execFile)('rm', ['-f', native]);
  }
  return readFileSync(cached);
}

/** Peak and current resident memory of the server process (VmHWM, VmRSS), in bytes. */
function memoryOf(pid: number): { peak: number; now: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { peak: kb('VmHWM'), now: kb('VmRSS') };
}

/** The image answered, decoded: its size, and the grey level at the middle of each quadrant. */
async function fetchImage(url: string): Promise<{ width: number; height: number; levels: number[] }> {
  const response = await adminFetch(url, { headers: { Accept: 'image/jpeg' } });
  const bytes = Buffer.from(await response.arrayBuffer());
  expect(response.status, `${url}: ${bytes.toString('utf8', 0, 300)}`).toBe(200);
  const image = sharp(bytes, { limitInputPixels: false });
  const { width, height } = await image.metadata();
  const levels: number[] = [];
  for (const [fx, fy] of [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]] as const) {
    const at = { left: Math.floor(width * fx), top: Math.floor(height * fy), width: 1, height: 1 };
    levels.push((await sharp(bytes, { limitInputPixels: false }).extract(at).greyscale().raw().toBuffer())[0]!);
  }
  return { width, height, levels };
}

let server: RunningServer;

beforeAll(async () => {
  const pixels = quadrants();
  const files = [await jpegInstance(pixels), await htj2kInstance(pixels), await j2kInstance(pixels)];
  server = await startServer();
  const response = await stow(server.dicomweb, files);
  expect(response.status, await response.clone().text()).toBe(200);
}, 300_000);
afterAll(async () => {
  await server?.stop();
});

describe('render bombs', () => {
  it('renders 16000² JPEG, JPEG 2000 and HTJ2K images at once, correctly, while /healthz answers', async () => {
    const pid = server.process.pid!;
    writeFileSync(`/proc/${pid}/clear_refs`, '5'); // peak memory counted from here (proc(5))
    const before = memoryOf(pid).now;

    let done = false;
    let slowest = 0;
    const watching = (async () => {
      for (let i = 0; i < 10_000 && !done; i++) {
        const started = Date.now();
        const response = await fetch(`${server.url}/healthz`);
        await response.arrayBuffer();
        slowest = Math.max(slowest, Date.now() - started);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();

    const requests: Array<[Which, string, number]> = [
      ['jpeg', '/thumbnail', 128],
      ['jpeg', '/thumbnail?viewport=64,64', 64],
      ['jpeg', '/rendered?viewport=1000,1000', 1000],
      ['jpeg', '/rendered', SIDE],
      ['jpeg', '/rendered?quality=70', SIDE],
      ['j2k', '/thumbnail', 128],
      ['j2k', '/rendered?viewport=500,500', 500],
      ['htj2k', '/thumbnail', 128],
      ['htj2k', '/rendered?viewport=700,700', 700],
    ];
    const images = await Promise.all(requests.map(([which, resource]) => fetchImage(`${server.dicomweb}${urlOf(which)}${resource}`))).finally(() => (done = true));
    await watching;

    const growth = memoryOf(pid).peak - before;
    console.log(`render bombs: server peak grew by ${(growth / 1024 ** 2).toFixed(0)} MB over ${(before / 1024 ** 2).toFixed(0)} MB; slowest /healthz ${slowest} ms`);
    images.forEach((image, i) => {
      const [which, resource, side] = requests[i]!;
      expect({ which, resource, width: image.width, height: image.height }).toEqual({ which, resource, width: side, height: side });
      image.levels.forEach((level, q) => expect(Math.abs(level - LEVELS[q]!), `${which}${resource} quadrant ${q}: ${level}`).toBeLessThanOrEqual(4));
    });
    expect(slowest).toBeLessThan(HEALTHZ_BOUND_MS);
    expect(growth).toBeLessThan(MAX_GROWTH);
  }, 600_000);
});
