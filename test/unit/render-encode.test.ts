import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { encodeImage } from '../../src/render/encode.js';
import { RenderError, type DisplayImage } from '../../src/render/types.js';

/** A gradient with a bright corner, so that a transposed or mis-sized raw buffer would show. */
function image(width: number, height: number, channels: 1 | 3): DisplayImage {
  const data = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) data[(y * width + x) * channels + c] = x < 4 && y < 4 ? 255 : (x * 3 + y * 5 + c * 70) & 0xff;
    }
  }
  return { data, width, height, channels };
}

async function refusal(promise: Promise<unknown>): Promise<RenderError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(RenderError);
  return error as RenderError;
}

describe('encodeImage', () => {
  it('writes JPEG, PNG and WebP files, each with its own signature, grey JPEG as one channel', async () => {
    const grey = image(40, 30, 1);
    const jpeg = await encodeImage(grey, { format: 'jpeg' });
    const png = await encodeImage(grey, { format: 'png' });
    const webp = await encodeImage(image(40, 30, 3), { format: 'webp' });
    expect([...jpeg.subarray(0, 3)]).toEqual([0xff, 0xd8, 0xff]);
    expect(await sharp(jpeg).metadata()).toMatchObject({ channels: 1 });
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(webp.toString('latin1', 0, 4)).toBe('RIFF');
    expect(webp.toString('latin1', 8, 12)).toBe('WEBP');
  });

  it('keeps every sample of a PNG, grey as one channel and colour as three', async () => {
    for (const channels of [1, 3] as const) {
      const source = image(33, 17, channels);
      const png = await encodeImage(source, { format: 'png' });
      expect(await sharp(png).metadata()).toMatchObject({ width: 33, height: 17, channels });
      const { data } = await sharp(png).toColourspace(channels === 1 ? 'b-w' : 'srgb').raw().toBuffer({ resolveWithObject: true });
      expect(data.equals(source.data)).toBe(true);
    }
  });

  it('fits the image inside the viewport, aspect ratio kept: 512×256 into 64×64 gives 64×32', async () => {
    const jpeg = await encodeImage(image(512, 256, 1), { format: 'jpeg', viewport: { width: 64, height: 64 } });
    expect(await sharp(jpeg).metadata()).toMatchObject({ width: 64, height: 32 });
    const tall = await encodeImage(image(100, 400, 3), { format: 'png', viewport: { width: 64, height: 64 } });
    expect(await sharp(tall).metadata()).toMatchObject({ width: 16, height: 64 });
  });

  it('does not enlarge an image smaller than the viewport', async () => {
    const png = await encodeImage(image(32, 16, 1), { format: 'png', viewport: { width: 256, height: 256 } });
    expect(await sharp(png).metadata()).toMatchObject({ width: 32, height: 16 });
  });

  it('uses quality 90 by default and honours the one asked for', async () => {
    const source = image(128, 128, 3);
    const q90 = await encodeImage(source, { format: 'jpeg' });
    expect(q90.equals(await encodeImage(source, { format: 'jpeg', quality: 90 }))).toBe(true);
    expect((await encodeImage(source, { format: 'jpeg', quality: 10 })).length).toBeLessThan(q90.length);
    expect((await encodeImage(source, { format: 'webp', quality: 10 })).length).toBeLessThan((await encodeImage(source, { format: 'webp' })).length);
  });

  it('lets sharp refuse more pixels than the limit (413)', async () => {
    const error = await refusal(encodeImage(image(100, 100, 1), { format: 'png', maxPixels: 9999 }));
    expect(error.status).toBe(413);
    expect(error.message).toMatch(/100×100 pixels, more than the limit of 9999/);
    await expect(encodeImage(image(100, 100, 1), { format: 'png', maxPixels: 10000 })).resolves.toBeInstanceOf(Buffer);
  });

  it('refuses a quality outside 1–100 or an empty viewport (400), and samples that do not fill the image (500)', async () => {
    expect((await refusal(encodeImage(image(8, 8, 1), { format: 'jpeg', quality: 0 }))).status).toBe(400);
    expect((await refusal(encodeImage(image(8, 8, 1), { format: 'webp', quality: 101 }))).status).toBe(400);
    expect((await refusal(encodeImage(image(8, 8, 1), { format: 'jpeg', viewport: { width: 0, height: 8 } }))).status).toBe(400);
    const short = { ...image(8, 8, 3), width: 9 };
    expect((await refusal(encodeImage(short, { format: 'png' }))).status).toBe(500);
  });
});
