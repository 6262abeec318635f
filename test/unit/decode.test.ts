import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Worker } from 'node:worker_threads';
import { afterAll, describe, expect, it } from 'vitest';
import { frameRanges } from '../../src/dicom/frames.js';
import { parsePart10 } from '../../src/dicom/parse.js';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { CodecPool } from '../../src/render/codec-pool.js';
import { closeCodecPool, decodeFrame } from '../../src/render/decode.js';
import { RenderError, type DecodedFrame, type PixelModule } from '../../src/render/types.js';
import { syntheticInstance } from '../fixtures/synthetic.js';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
type Fixture = { path: string; transferSyntaxUID: string; numberOfFrames: number };
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const work = mkdtempSync(path.join(tmpdir(), 'pacs-decode-'));

afterAll(async () => {
  await closeCodecPool();
  rmSync(work, { recursive: true, force: true });
});

/**
 * Lossy syntaxes are decoded by other libraries than the reference tools' (libjpeg-turbo against dcmtk's IJG,
 * OpenJPEG 2.5 against GDCM's): samples may differ by rounding, no more.
 */
const LOSSY_TOLERANCE = { max: 2, mean: 0.5 };
/** HTJ2K lossy is compared with the pixels it was encoded from, so this bounds the compression error itself. */
const HTJ2K_LOSSY_TOLERANCE = { max: 16, mean: 2 };
const LOSSY = new Set(['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.81', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.4.203']);
/** No Debian tool reads HTJ2K: each HTJ2K fixture is compared with the native fixture made from the same start image (make-fixtures.sh). */
const HTJ2K_SOURCE: Record<string, string> = {
  'htj2k-lossless.dcm': 'explicit-le.dcm',
  'htj2k-lossless-rpcl-rgb.dcm': 'explicit-le-rgb.dcm',
  'htj2k-lossy-signed16.dcm': 'explicit-le-signed16.dcm',
};

/** The frames as readFrames serves them: ranged reads of frameRanges, big-endian words swapped, deflated data inflated. */
async function framesOf(file: Buffer) {
  const header = parsePart10(file);
  const ranges = await frameRanges(header, { size: file.length, read: async (offset, length) => file.subarray(offset, offset + length) });
  const source = header.inflated ? header.bytes : file;
  const ds = header.dataSet;
  const swap = header.transferSyntaxUID === TransferSyntax.ExplicitVRBigEndian && ds.uint16('x00280100') === 16;
  const frames = ranges.map((r) => {
    const bytes = Buffer.concat(r.map(([o, l]) => source.subarray(o, o + l)));
    return swap ? bytes.swap16() : bytes;
  });
  const module: PixelModule = {
    rows: ds.uint16('x00280010')!,
    columns: ds.uint16('x00280011')!,
    samplesPerPixel: (ds.uint16('x00280002') ?? 1) as 1 | 3,
    bitsAllocated: ds.uint16('x00280100') as PixelModule['bitsAllocated'],
    bitsStored: ds.uint16('x00280101')!,
    highBit: ds.uint16('x00280102')!,
    pixelRepresentation: (ds.uint16('x00280103') ?? 0) as 0 | 1,
    photometric: ds.string('x00280004')!,
    planarConfiguration: (ds.uint16('x00280006') ?? 0) as 0 | 1,
    numberOfFrames: frames.length,
    rescaleSlope: 1,
    rescaleIntercept: 0,
    windows: [],
    voiFunction: 'LINEAR',
  };
  return { transferSyntaxUID: header.transferSyntaxUID, frames, module };
}

type Reference = { frames: number[][]; photometric: string };

/** Decompressed by dcmtk (or gdcmconv for JPEG 2000), its pixel data written out raw by dcmdump, attributes read from dcmdump's text. */
function reference(name: string, transferSyntaxUID: string): Reference {
  const source = path.join(FIXTURES, HTJ2K_SOURCE[name] ?? name);
  const syntax = HTJ2K_SOURCE[name] ? TransferSyntax.ExplicitVRLittleEndian : transferSyntaxUID;
  const native = path.join(work, `${name}.native.dcm`);
  const tool: [string, string[]] =
    /\.4\.(50|51|57|70)$/.test(syntax) ? ['dcmdjpeg', []]
    : /\.4\.8[01]$/.test(syntax) ? ['dcmdjpls', []]
    : /\.4\.9[01]$/.test(syntax) ? ['gdcmconv', ['--raw']]
    : syntax === TransferSyntax.RLELossless ? ['dcmdrle', []]
    : ['dcmconv', ['+te']];
  execFileSync(tool[0], [...tool[1], source, native]);
  const tags = ['0028,0002', '0028,0004', '0028,0006', '0028,0008', '0028,0010', '0028,0011', '0028,0100', '0028,0103'];
  const dump = execFileSync('dcmdump', ['-q', ...tags.flatMap((t) => ['+P', t]), native], { encoding: 'latin1' });
  const value = (tag: string) => new RegExp(`^\\(${tag}\\) \\w\\w (?:\\[([^\\]]*)\\]|(\\S+))`, 'm').exec(dump)?.slice(1).find((v) => v !== undefined);
  const rawDir = mkdtempSync(path.join(work, 'raw-'));
  execFileSync('dcmdump', ['-q', '+W', rawDir, native]);
  const raw = readFileSync(path.join(rawDir, readdirSync(rawDir)[0]!)); // little endian
  const samples = Number(value('0028,0002') ?? 1);
  const rows = Number(value('0028,0010'));
  const columns = Number(value('0028,0011'));
  const bits = Number(value('0028,0100'));
  const signed = value('0028,0103') === '1';
  const planar = value('0028,0006') === '1';
  const frameCount = Number(value('0028,0008') ?? 1);
  const perFrame = rows * columns * samples;
  const read = (i: number) =>
    bits === 8 ? (signed ? raw.readInt8(i) : raw.readUInt8(i))
    : bits === 16 ? (signed ? raw.readInt16LE(i * 2) : raw.readUInt16LE(i * 2))
    : signed ? raw.readInt32LE(i * 4) : raw.readUInt32LE(i * 4);
  const frames = Array.from({ length: frameCount }, (_, f) => interleave(Array.from({ length: perFrame }, (_, i) => read(f * perFrame + i)), samples, planar));
  return { frames, photometric: value('0028,0004')! };
}

function interleave(values: ArrayLike<number>, samples: number, planar: boolean): number[] {
  if (!planar || samples === 1) return Array.from(values);
  const pixels = values.length / samples;
  return Array.from({ length: values.length }, (_, i) => values[(i % samples) * pixels + Math.floor(i / samples)]!);
}

function difference(decoded: DecodedFrame, expected: number[]) {
  const got = interleave(decoded.pixels, decoded.samplesPerPixel, decoded.planar);
  expect(got.length).toBe(expected.length);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < got.length; i++) {
    const d = Math.abs(got[i]! - expected[i]!);
    max = Math.max(max, d);
    sum += d;
  }
  return { max, mean: sum / got.length };
}

const TYPED: Record<string, string> = { '8/0': 'Uint8Array', '8/1': 'Int8Array', '16/0': 'Uint16Array', '16/1': 'Int16Array', '32/0': 'Uint32Array', '32/1': 'Int32Array' };

describe('decodeFrame against the reference tools', () => {
  const table: string[] = [];
  afterAll(() => console.log(`fixture → max |Δ| / mean |Δ| over all frames\n${table.join('\n')}`));

  for (const fixture of manifest) {
    const lossy = LOSSY.has(fixture.transferSyntaxUID);
    it(`decodes every frame of ${fixture.path} ${lossy ? 'within tolerance of' : 'identically to'} the reference`, async () => {
      const { transferSyntaxUID, frames, module } = await framesOf(readFileSync(path.join(FIXTURES, fixture.path)));
      const expected = reference(fixture.path, transferSyntaxUID);
      expect(frames).toHaveLength(expected.frames.length);
      let max = 0;
      let total = 0;
      for (const [i, bytes] of frames.entries()) {
        const decoded = await decodeFrame(transferSyntaxUID, bytes, module);
        expect(decoded.pixels.constructor.name, 'typed array from BitsAllocated and PixelRepresentation').toBe(TYPED[`${module.bitsAllocated}/${module.pixelRepresentation}`]);
        expect([decoded.rows, decoded.columns, decoded.samplesPerPixel]).toEqual([module.rows, module.columns, module.samplesPerPixel]);
        expect(decoded.photometric, 'photometric after decoding').toBe(expected.photometric);
        const d = difference(decoded, expected.frames[i]!);
        max = Math.max(max, d.max);
        total += d.mean;
      }
      const mean = total / frames.length;
      table.push(`${fixture.path.padEnd(34)} ${String(max).padStart(4)} / ${mean.toFixed(3)}`);
      const tolerance = fixture.transferSyntaxUID === '1.2.840.10008.1.2.4.203' ? HTJ2K_LOSSY_TOLERANCE : lossy ? LOSSY_TOLERANCE : { max: 0, mean: 0 };
      expect(max, `${fixture.path}: largest difference`).toBeLessThanOrEqual(tolerance.max);
      expect(mean, `${fixture.path}: mean difference`).toBeLessThanOrEqual(tolerance.mean);
    });
  }

  it('decodes HTJ2K as OpenJPEG, an independent decoder, does', async () => {
    // The HTJ2K fixtures are written by OpenJPH, whose decoder we use: OpenJPEG 2.5 reads HTJ2K too.
    const require = createRequire(import.meta.url);
    type Decoder = { getEncodedBuffer(n: number): Uint8Array; decode(): void; getDecodedBuffer(): Uint8Array; delete(): void };
    const openjpeg = await (require('@cornerstonejs/codec-openjpeg/decodewasmjs') as (m: object) => Promise<{ J2KDecoder: new () => Decoder }>)({ print: () => {}, printErr: () => {} });
    for (const name of Object.keys(HTJ2K_SOURCE)) {
      const { transferSyntaxUID, frames, module: m } = await framesOf(readFileSync(path.join(FIXTURES, name)));
      const decoder = new openjpeg.J2KDecoder();
      decoder.getEncodedBuffer(frames[0]!.length).set(frames[0]!);
      decoder.decode();
      const out = decoder.getDecodedBuffer().slice();
      decoder.delete();
      const ours = await decodeFrame(transferSyntaxUID, frames[0]!, m);
      const theirs = m.bitsAllocated === 8 ? Array.from(out) : Array.from(m.pixelRepresentation ? new Int16Array(out.buffer) : new Uint16Array(out.buffer));
      const d = difference(ours, theirs);
      const tolerance = LOSSY.has(transferSyntaxUID) ? LOSSY_TOLERANCE : { max: 0, mean: 0 };
      expect(d.max, name).toBeLessThanOrEqual(tolerance.max);
      expect(d.mean, name).toBeLessThanOrEqual(tolerance.mean);
    }
  });

  it('reports colour by plane when PlanarConfiguration is 1, and leaves the samples where they are', async () => {
    const { transferSyntaxUID, frames, module } = await framesOf(readFileSync(path.join(FIXTURES, 'explicit-le-rgb-planar.dcm')));
    const decoded = await decodeFrame(transferSyntaxUID, frames[0]!, module);
    expect(decoded.planar).toBe(true);
    expect(Buffer.from(decoded.pixels.buffer, decoded.pixels.byteOffset, decoded.pixels.byteLength).equals(frames[0]!)).toBe(true);
  });
});

function module(o: Partial<PixelModule>): PixelModule {
  return {
    rows: 64, columns: 64, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 16, highBit: 15, pixelRepresentation: 0, photometric: 'MONOCHROME2',
    planarConfiguration: 0, numberOfFrames: 1, rescaleSlope: 1, rescaleIntercept: 0, windows: [], voiFunction: 'LINEAR', ...o,
  };
}

async function renderError(promise: Promise<unknown>): Promise<RenderError> {
  const e = await promise.then(() => undefined, (e: unknown) => e);
  expect(e).toBeInstanceOf(RenderError);
  return e as RenderError;
}

async function firstFrame(name: string) {
  const { transferSyntaxUID, frames, module } = await framesOf(readFileSync(path.join(FIXTURES, name)));
  let bytes = frames[0]!;
  while (bytes.at(-1) === 0) bytes = bytes.subarray(0, -1); // fragment padding
  return { transferSyntaxUID, bytes, module };
}

describe('decodeFrame refuses what it cannot decode', () => {
  it('unpacks 1-bit pixels, first pixel in the lowest bit', async () => {
    const decoded = await decodeFrame(TransferSyntax.ExplicitVRLittleEndian, new Uint8Array([0b00000101, 0b10000000]), module({ rows: 1, columns: 16, bitsAllocated: 1, bitsStored: 1, highBit: 0 }));
    expect(decoded.pixels).toBeInstanceOf(Uint8Array);
    expect(Array.from(decoded.pixels)).toEqual([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
  });

  // OpenJPH and dcmjs-codecs' 12-bit libjpeg decode a stream cut short whose end marker was put back, silently:
  // for them only a missing end marker (a file or transfer cut short) is caught.
  const lenient = new Set(['htj2k-lossless.dcm', 'jpeg-extended.dcm']);
  for (const name of ['jpeg-baseline-ybr422.dcm', 'jpeg-extended.dcm', 'jpeg-lossless-sv1.dcm', 'jpeg-ls-lossless.dcm', 'j2k-lossless.dcm', 'htj2k-lossless.dcm']) {
    it(`answers 422 for a cut-short or corrupted ${name} frame`, async () => {
      const { transferSyntaxUID, bytes, module } = await firstFrame(name);
      const cut = bytes.subarray(0, Math.floor(bytes.length * 0.6));
      const cases = {
        'cut short': Buffer.from(cut),
        // the end marker put back, so that the codec itself meets the missing data
        'cut short, end marker restored': Buffer.concat([cut, Buffer.from([0xff, 0xd9])]),
        'header overwritten': Buffer.from(bytes).fill(0xee, 4, 40),
      };
      for (const [what, broken] of Object.entries(cases)) {
        if (lenient.has(name) && what === 'cut short, end marker restored') continue;
        const e = await renderError(decodeFrame(transferSyntaxUID, broken, module));
        expect(e.status, `${name}, ${what}: ${e.message}`).toBe(422);
      }
    });
  }

  it('answers 413 for a frame declaring 60000×60000, before allocating anything', async () => {
    const before = process.memoryUsage().arrayBuffers;
    const e = await renderError(decodeFrame('1.2.840.10008.1.2.4.80', new Uint8Array(16), module({ rows: 60000, columns: 60000 })));
    expect(e.status).toBe(413);
    expect(e.message).toMatch(/7200000000 bytes.*limit of 268435456/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 * 1024 * 1024);
    const native = await renderError(decodeFrame(TransferSyntax.ExplicitVRLittleEndian, new Uint8Array(16), module({ rows: 60000, columns: 60000 })));
    expect(native.status).toBe(413);
  });

  it('answers 422 for a codestream whose own header disagrees with the data set, before any codec sees it', async () => {
    const { transferSyntaxUID, bytes, module: m } = await firstFrame('jpeg-ls-lossless.dcm');
    const forged = Buffer.from(bytes);
    const sof = forged.indexOf(Buffer.from([0xff, 0xf7]));
    forged.writeUInt16BE(60000, sof + 5); // lines
    forged.writeUInt16BE(60000, sof + 7); // samples per line
    const e = await renderError(decodeFrame(transferSyntaxUID, forged, m));
    expect(e.status).toBe(422);
    expect(e.message).toMatch(/60000×60000.*data set says 64×64/);
  });

  it('takes the frame size limit from its options', async () => {
    const { transferSyntaxUID, bytes, module: m } = await firstFrame('explicit-le.dcm');
    expect((await renderError(decodeFrame(transferSyntaxUID, bytes, m, { maxFrameBytes: 64 * 64 * 2 - 1 }))).status).toBe(413);
    expect((await decodeFrame(transferSyntaxUID, bytes, m, { maxFrameBytes: 64 * 64 * 2 })).pixels).toHaveLength(64 * 64);
  });

  it('answers 501 naming a transfer syntax it has no decoder for', async () => {
    const e = await renderError(decodeFrame('1.2.840.10008.1.2.4.100', new Uint8Array(16), module({})));
    expect(e.status).toBe(501);
    expect(e.message).toContain('MPEG2 Main Profile (1.2.840.10008.1.2.4.100)');
    expect((await renderError(decodeFrame('1.2.3.4', new Uint8Array(16), module({})))).status).toBe(501);
  });

  it('answers 422 when the native frame is shorter than the image it declares', async () => {
    const e = await renderError(decodeFrame(TransferSyntax.ExplicitVRLittleEndian, new Uint8Array(100), module({})));
    expect(e.status).toBe(422);
  });
});

describe('codec workers', () => {
  /** A frame that keeps a worker busy for a while (~0.2 s): 2048×2048 JPEG Lossless, decoded in JavaScript. */
  const big = (() => {
    let cached: Promise<{ transferSyntaxUID: string; bytes: Buffer; module: PixelModule }> | undefined;
    return () =>
      (cached ??= (async () => {
        const native = path.join(work, 'big.dcm');
        const compressed = path.join(work, 'big-jpeg.dcm');
        writeFileSync(native, syntheticInstance({ rows: 2048, columns: 2048 }));
        execFileSync('dcmcjpeg', ['-q', '+e1', native, compressed]);
        const { transferSyntaxUID, frames, module: m } = await framesOf(readFileSync(compressed));
        return { transferSyntaxUID, bytes: frames[0]!, module: m };
      })());
  })();

  it('replaces a worker killed mid-decode: that frame gets 500, the next one decodes', async () => {
    const workers: Worker[] = [];
    const pool = new CodecPool({ size: 1, onWorker: (w) => workers.push(w) });
    try {
      const small = await firstFrame('jpeg-lossless-sv1.dcm');
      await decodeFrame(small.transferSyntaxUID, Buffer.from(small.bytes), small.module, { pool }); // worker up, codec loaded
      const { transferSyntaxUID, bytes, module: m } = await big();
      const decoding = decodeFrame(transferSyntaxUID, Buffer.from(bytes), m, { pool });
      setTimeout(() => void workers[0]!.terminate(), 20);
      const e = await renderError(decoding);
      expect(e.status).toBe(500);
      expect(e.message).toMatch(/decoder stopped/);
      const after = await decodeFrame(small.transferSyntaxUID, Buffer.from(small.bytes), small.module, { pool });
      expect(after.pixels).toHaveLength(64 * 64);
      expect(workers).toHaveLength(2);
    } finally {
      await pool.close();
    }
  });

  it('stops a decode that overruns its time with 503, and keeps serving', async () => {
    const pool = new CodecPool({ size: 1, timeoutMs: 5 });
    try {
      const { transferSyntaxUID, bytes, module: m } = await big();
      const e = await renderError(decodeFrame(transferSyntaxUID, Buffer.from(bytes), m, { pool }));
      expect(e.status).toBe(503);
      expect(e.message).toMatch(/longer than 5 ms/);
      expect(pool.workers).toBe(0);
    } finally {
      await pool.close();
    }
  });

  it('transfers a frame that owns its buffer instead of copying it', async () => {
    const { transferSyntaxUID, bytes, module: m } = await firstFrame('jpeg-ls-lossless.dcm');
    const owned = new Uint8Array(bytes);
    await decodeFrame(transferSyntaxUID, owned, m);
    expect(owned.byteLength, 'detached by the transfer').toBe(0);
    const view = Buffer.concat([Buffer.alloc(8), bytes]).subarray(8);
    await decodeFrame(transferSyntaxUID, view, m);
    expect(view.byteLength, 'a view of a larger buffer is copied, the buffer left alone').toBe(bytes.length);
  });

  it('refuses frames with 503 once closed', async () => {
    const pool = new CodecPool();
    await pool.close();
    const { transferSyntaxUID, bytes, module: m } = await firstFrame('jpeg-ls-lossless.dcm');
    expect((await renderError(decodeFrame(transferSyntaxUID, bytes, m, { pool }))).status).toBe(503);
  });
});
