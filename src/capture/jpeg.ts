/**
 * What a JPEG file is, read off its markers (ITU T.81 B.1), and the same JPEG without the segments a clinic must
 * not pass on: EXIF and XMP (APP1: the phone's GPS position, often the patient's home, its serial number, a
 * thumbnail) and comments. The entropy-coded image is copied byte for byte: nothing is decoded or re-encoded.
 */
export type JpegInfo = {
  /** SOF0 with 8-bit samples: what the JPEG Baseline transfer syntax (1.2.840.10008.1.2.4.50) holds as it is. */
  baseline: boolean;
  rows: number;
  columns: number;
  components: number;
  /** Chroma sampled at less than full resolution (4:2:2, 4:2:0): YBR_FULL_422 rather than YBR_FULL. */
  subsampled: boolean;
  /** The Adobe APP14 transform flag: 0 means the three components are RGB, not YCbCr. */
  adobeTransform?: number;
  /** EXIF orientation (1 to 8): how the camera was held; 1 when not said. */
  orientation: number;
  /** The JPEG without APP1–APP13, APP15 and COM segments. */
  stripped: Buffer;
};

export class NotAJpeg extends Error {}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const COM = 0xfe;
/** Kept: JFIF (APP0), the ICC colour profile (APP2), Adobe's colour transform (APP14); they say how to show the pixels. */
const KEPT_APPS = new Set([0xe0, 0xe2, 0xee]);
const SOF_MARKERS = new Set([0xc0, 0xc1, 0xc2, 0xc3, 0xc5, 0xc6, 0xc7, 0xc9, 0xca, 0xcb, 0xcd, 0xce, 0xcf]);

export function readJpeg(bytes: Buffer): JpegInfo {
  if (bytes.length < 4 || bytes[0] !== 0xff || bytes[1] !== SOI) throw new NotAJpeg('it does not begin as a JPEG does (FF D8)');
  const kept: Buffer[] = [bytes.subarray(0, 2)];
  let sof: { marker: number; precision: number; rows: number; columns: number; components: number; subsampled: boolean } | undefined;
  let adobeTransform: number | undefined;
  let orientation = 1;
  let at = 2;
  for (;;) {
    if (at + 4 > bytes.length) throw new NotAJpeg('it is cut short: it ends before its image data begins');
    if (bytes[at] !== 0xff) throw new NotAJpeg(`a marker was expected at byte ${at}`);
    const marker = bytes[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    const length = bytes.readUInt16BE(at + 2);
    const end = at + 2 + length;
    if (length < 2 || end > bytes.length) throw new NotAJpeg(`it is cut short: the segment at byte ${at} runs past the end of the file`);
    const segment = bytes.subarray(at + 4, end);
    if (SOF_MARKERS.has(marker)) {
      if (segment.length < 6) throw new NotAJpeg('its frame header is cut short');
      const components = segment[5]!;
      if (segment.length < 6 + 3 * components) throw new NotAJpeg('its frame header is cut short');
      const sampling = Array.from({ length: components }, (_, i) => segment[6 + 3 * i + 1]!);
      sof = { marker, precision: segment[0]!, rows: segment.readUInt16BE(1), columns: segment.readUInt16BE(3), components, subsampled: new Set(sampling).size > 1 };
    }
    if (marker === 0xee && segment.subarray(0, 5).toString('latin1') === 'Adobe' && segment.length >= 12) adobeTransform = segment[11];
    if (marker === 0xe1 && segment.subarray(0, 6).toString('latin1') === 'Exif\0\0') orientation = exifOrientation(segment.subarray(6)) ?? orientation;
    const stripped = marker === COM || (marker >= 0xe1 && marker <= 0xef && !KEPT_APPS.has(marker));
    if (!stripped) kept.push(bytes.subarray(at, end));
    at = end;
    if (marker === SOS) break;
  }
  if (!sof) throw new NotAJpeg('it has no frame header (SOF) before its image data');
  if (sof.rows === 0 || sof.columns === 0) throw new NotAJpeg('its frame header gives no image size');
  // The image data runs to EOI; whatever follows it (another image, padding) is not ours to keep.
  const eoi = bytes.lastIndexOf(Buffer.from([0xff, EOI]));
  if (eoi < at) throw new NotAJpeg('it is cut short: its image data has no end (FF D9)');
  kept.push(bytes.subarray(at, eoi + 2));
  return {
    baseline: sof.marker === 0xc0 && sof.precision === 8,
    rows: sof.rows,
    columns: sof.columns,
    components: sof.components,
    subsampled: sof.subsampled,
    adobeTransform,
    orientation,
    stripped: Buffer.concat(kept),
  };
}

/** Orientation (tag 0x0112) from IFD0 of an EXIF TIFF structure; undefined when absent or unreadable. */
function exifOrientation(tiff: Buffer): number | undefined {
  if (tiff.length < 8) return undefined;
  const order = tiff.subarray(0, 2).toString('latin1');
  if (order !== 'II' && order !== 'MM') return undefined;
  const le = order === 'II';
  const u16 = (o: number) => (le ? tiff.readUInt16LE(o) : tiff.readUInt16BE(o));
  const u32 = (o: number) => (le ? tiff.readUInt32LE(o) : tiff.readUInt32BE(o));
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return undefined;
  const entries = u16(ifd);
  for (let i = 0; i < entries; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return undefined;
    if (u16(entry) === 0x0112) {
      const value = u16(entry + 8);
      return value >= 1 && value <= 8 ? value : undefined;
    }
  }
  return undefined;
}
