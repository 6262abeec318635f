import type { Region } from './codec-protocol.js';
import { RenderError, type DisplayImage } from './types.js';

/**
 * The region of PS3.18 8.3.5.1.3 cut out of a display image: from (x, y), |width| × |height| source pixels,
 * clipped to the image, and mirrored along an axis whose extent is negative.
 */
export function cropped(image: DisplayImage, region: Region): DisplayImage {
  const flipX = region.width < 0;
  const flipY = region.height < 0;
  const x0 = Math.max(0, region.x);
  const y0 = Math.max(0, region.y);
  const x1 = Math.min(image.width, region.x + Math.abs(region.width));
  const y1 = Math.min(image.height, region.y + Math.abs(region.height));
  const width = x1 - x0;
  const height = y1 - y0;
  if (width <= 0 || height <= 0) {
    throw new RenderError(400, `the viewport's source region lies outside the ${image.width}×${image.height} image`);
  }
  if (!flipX && !flipY && x0 === 0 && y0 === 0 && width === image.width && height === image.height) return image;
  const c = image.channels;
  const data = Buffer.allocUnsafe(width * height * c);
  for (let y = 0; y < height; y++) {
    const sy = flipY ? y1 - 1 - y : y0 + y;
    if (!flipX) {
      image.data.copy(data, y * width * c, (sy * image.width + x0) * c, (sy * image.width + x1) * c);
      continue;
    }
    for (let x = 0; x < width; x++) {
      const from = (sy * image.width + (x1 - 1 - x)) * c;
      image.data.copy(data, (y * width + x) * c, from, from + c);
    }
  }
  return { data, width, height, channels: c };
}
