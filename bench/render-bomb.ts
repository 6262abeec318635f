import fs from 'node:fs/promises';
import path from 'node:path';
import sharp from 'sharp';
import { newUid } from '../src/dicom/write.js';
import { greyImage } from '../test/fixtures/synthetic.js';

/** The render bomb of issue 10: small on disk, 16000×16000 once decoded (256 MB of 8-bit grey). */
export const BOMB_SIDE = 16000;
const JPEG_BASELINE = '1.2.840.10008.1.2.4.50';
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
/** Bump when the recipe changes, so a cached JPEG of the old recipe is not reused. */
const RECIPE = 1;

export type RenderBomb = { bytes: Buffer; jpegBytes: number; studyUid: string; seriesUid: string; sopUid: string };

/**
 * A baseline JPEG of 16000×16000 grey pixels (about 2 MB: a smooth pattern scaled up, which compresses well) wrapped
 * as a DICOM Secondary Capture by our own writer. One sample per pixel keeps it under the server's decode limit
 * (PACS_RENDER_MAX_FRAME_BYTES, 256 MiB by default), so it is rendered rather than refused: the case the issue found.
 * The JPEG takes seconds to make and is kept in `cacheDir`; the UIDs are new on every call.
 */
export async function renderBomb(cacheDir: string): Promise<RenderBomb> {
  const jpeg = await cachedJpeg(path.join(cacheDir, `render-bomb-v${RECIPE}-${BOMB_SIDE}.jpg`));
  const ids = { studyUid: newUid(), seriesUid: newUid(), sopUid: newUid() };
  const bytes = greyImage({
    sopClassUID: SECONDARY_CAPTURE,
    studyUID: ids.studyUid,
    seriesUID: ids.seriesUid,
    sopInstanceUID: ids.sopUid,
    modality: 'OT',
    patientName: 'Bomb^Render',
    side: BOMB_SIDE,
    bitsAllocated: 8,
    transferSyntaxUID: JPEG_BASELINE,
    frames: [jpeg],
    extra: [
      { tag: '00080020', vr: 'DA', value: '20260101' },
      { tag: '00080064', vr: 'CS', value: 'WSD' },
      { tag: '00081030', vr: 'LO', value: 'bench render bomb' },
      { tag: '00100020', vr: 'LO', value: 'BENCH-BOMB' },
      { tag: '00200011', vr: 'IS', value: '1' },
      { tag: '00200013', vr: 'IS', value: '1' },
    ],
  });
  return { bytes, jpegBytes: jpeg.length, ...ids };
}

async function cachedJpeg(file: string): Promise<Buffer> {
  const cached = await fs.readFile(file).catch(() => undefined);
  if (cached) return cached;
  const side = 256;
  const pattern = Buffer.alloc(side * side);
  // A diagonal ramp with stripes: not blank at any size, and smooth enough once scaled up to stay small.
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) pattern[y * side + x] = ((x + y) >> 1) ^ (((x >> 4) & 1) * 40);
  const jpeg = await sharp(pattern, { raw: { width: side, height: side, channels: 1 }, limitInputPixels: false })
    .resize(BOMB_SIDE, BOMB_SIDE, { kernel: 'cubic' })
    .toColourspace('b-w')
    .jpeg({ quality: 80, progressive: false, mozjpeg: false })
    .toBuffer();
  await fs.mkdir(path.dirname(file), { recursive: true });
  // Written beside its final name and renamed: an interrupted run leaves no half file.
  await fs.writeFile(`${file}.partial-${process.pid}`, jpeg);
  await fs.rename(`${file}.partial-${process.pid}`, file);
  return jpeg;
}
