import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { toDicomJson } from '../../src/dicom/json.js';
import { parsePart10 } from '../../src/dicom/parse.js';
import type { WriteElement } from '../../src/dicom/write.js';
import { toDisplay } from '../../src/render/display.js';
import { pixelModuleOf } from '../../src/render/pixel-module.js';
import type { DecodedFrame, DisplayImage, PixelModule, WindowRequest } from '../../src/render/types.js';
import { syntheticInstance } from '../fixtures/synthetic.js';

/*
 * Every case is a file from our generator, rendered twice: by dcmtk's dcm2pnm (the reference) and by
 * pixelModuleOf + toDisplay over a plain typed-array view of the file's native PixelData. dcmtk truncates where we
 * round, hence a tolerance of 1; where a case needs more, it says why.
 */

const WORK = mkdtempSync(path.join(tmpdir(), 'render-display-'));
afterAll(() => rmSync(WORK, { recursive: true, force: true }));

/** Seeded, so a failure can be replayed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type ImageSpec = {
  photometric: string;
  bitsAllocated: 1 | 8 | 16 | 32;
  bitsStored?: number;
  highBit?: number;
  signed?: boolean;
  samples?: 1 | 3;
  planar?: 0 | 1;
  rows?: number;
  columns?: number;
  /** PixelData exactly as stored (little endian). */
  pixels: Buffer;
  /** WindowCenter/Width pairs; none by default. */
  windows?: Array<[number, number]>;
  rescale?: [slope: number, intercept: number];
  voiFunction?: string;
  extra?: WriteElement[];
};

function dicomFile(s: ImageSpec): Buffer {
  const bitsStored = s.bitsStored ?? s.bitsAllocated;
  const windows = s.windows ?? [];
  const extra: WriteElement[] = [
    { tag: '00280002', vr: 'US', value: s.samples ?? 1 },
    { tag: '00280004', vr: 'CS', value: s.photometric },
    ...(s.samples === 3 ? [{ tag: '00280006', vr: 'US', value: s.planar ?? 0 }] : []),
    { tag: '00280100', vr: 'US', value: s.bitsAllocated },
    { tag: '00280101', vr: 'US', value: bitsStored },
    { tag: '00280102', vr: 'US', value: s.highBit ?? bitsStored - 1 },
    { tag: '00280103', vr: 'US', value: s.signed ? 1 : 0 },
    { tag: '00281050', vr: 'DS', value: windows.map((w) => String(w[0])) },
    { tag: '00281051', vr: 'DS', value: windows.map((w) => String(w[1])) },
    { tag: '00281053', vr: 'DS', value: String(s.rescale?.[0] ?? 1) },
    { tag: '00281052', vr: 'DS', value: String(s.rescale?.[1] ?? 0) },
    ...(s.voiFunction ? [{ tag: '00281056', vr: 'CS', value: s.voiFunction }] : []),
    { tag: '7FE00010', vr: s.bitsAllocated > 8 ? 'OW' : 'OB', value: s.pixels },
    ...(s.extra ?? []),
  ];
  return syntheticInstance({ modality: s.samples === 3 || s.photometric === 'PALETTE COLOR' ? 'US' : 'CT', rows: s.rows ?? 64, columns: s.columns ?? 64, extra });
}

/** What the server will have: the stored DICOM JSON (bulk data by URI) and the first frame's native samples. */
async function readBack(file: Buffer): Promise<{ module: PixelModule; frame: DecodedFrame }> {
  const header = parsePart10(file);
  const json = toDicomJson(header.dataSet, { bulkDataBase: 'instance' });
  const readBulk = async (uri: string) => {
    const element = header.dataSet.elements[`x${uri.slice(uri.lastIndexOf('/') + 1).toLowerCase()}`]!;
    return header.bytes.subarray(element.dataOffset, element.dataOffset + element.length);
  };
  const module = await pixelModuleOf(json, readBulk);
  const pixelData = header.pixelData!;
  // A copy, so the typed array starts on its own aligned buffer as a decoder's output would.
  const bytes = new Uint8Array(header.bytes.subarray(pixelData.dataOffset, pixelData.dataOffset + pixelData.length));
  const signed = module.pixelRepresentation === 1 && module.samplesPerPixel === 1;
  const pixels =
    module.bitsAllocated === 32
      ? signed ? new Int32Array(bytes.buffer) : new Uint32Array(bytes.buffer)
      : module.bitsAllocated === 16
        ? signed ? new Int16Array(bytes.buffer) : new Uint16Array(bytes.buffer)
        : signed ? new Int8Array(bytes.buffer) : bytes;
  return {
    module,
    frame: {
      pixels,
      rows: module.rows,
      columns: module.columns,
      samplesPerPixel: module.samplesPerPixel,
      planar: module.planarConfiguration === 1,
      photometric: module.photometric,
    },
  };
}

/** Binary PGM (P5) or PPM (P6) as dcm2pnm +op writes it. */
function readPnm(file: Buffer): DisplayImage {
  const header = /^(P[56])\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(\d+)\s/.exec(file.toString('latin1', 0, 64));
  if (!header || header[4] !== '255') throw new Error('not an 8-bit binary PNM');
  const [all, magic, width, height] = header;
  return { data: file.subarray(all.length), width: Number(width), height: Number(height), channels: magic === 'P5' ? 1 : 3 };
}

let fileCount = 0;
function dcm2pnm(file: Buffer, options: string[]): DisplayImage {
  const name = path.join(WORK, `case-${++fileCount}`);
  writeFileSync(`${name}.dcm`, file);
  execFileSync('dcm2pnm', ['-q', '+op', ...options, `${name}.dcm`, `${name}.pnm`]);
  return readPnm(readFileSync(`${name}.pnm`));
}

function maxDelta(ours: DisplayImage, reference: DisplayImage): number {
  expect([ours.width, ours.height, ours.channels]).toEqual([reference.width, reference.height, reference.channels]);
  expect(ours.data.length).toBe(reference.data.length);
  let max = 0;
  for (let i = 0; i < ours.data.length; i++) max = Math.max(max, Math.abs(ours.data[i]! - reference.data[i]!));
  return max;
}

/** A reference that is nearly one grey would let a broken pipeline pass: insist on a real spread of values. */
function distinctValues(image: DisplayImage): number {
  return new Set(image.data).size;
}

const rows: Array<{ case: string; dcm2pnm: string; maxDelta: number; tolerance: number }> = [];
afterAll(() => {
  if (process.env.RENDER_DELTAS) console.table(rows);
});

type Comparison = {
  name: string;
  image: () => ImageSpec;
  /** dcm2pnm's VOI options. */
  options: string[];
  window?: WindowRequest;
  /** Render as if the data set named no window (our fallback is dcmtk's +Wm). */
  noDataSetWindow?: boolean;
  tolerance?: number;
  why?: string;
  /** Distinct values the reference must show for the case to prove anything (16 unless the image cannot have them). */
  minDistinct?: number;
};

function compare(c: Comparison) {
  it(`${c.name} matches dcm2pnm${c.options.map((o) => ` ${o}`).join('')}${c.why ? ` (${c.why})` : ''}`, async () => {
    const file = dicomFile(c.image());
    const { module, frame } = await readBack(file);
    const reference = dcm2pnm(file, c.options);
    const ours = toDisplay(frame, c.noDataSetWindow ? { ...module, windows: [] } : module, c.window);
    const delta = maxDelta(ours, reference);
    const tolerance = c.tolerance ?? 1;
    rows.push({ case: c.name, dcm2pnm: c.options.join(' '), maxDelta: delta, tolerance });
    expect(distinctValues(reference)).toBeGreaterThanOrEqual(c.minDistinct ?? 16);
    expect(delta).toBeLessThanOrEqual(tolerance);
  });
}

// ---------------------------------------------------------------- sample makers

/** Every value of a `bits`-bit cell (or, when there are more than n, n evenly spread from 0 to the top), shuffled. */
function greyValues(n: number, bits: number, seed: number): number[] {
  const r = random(seed);
  const range = 2 ** bits;
  const values = Array.from({ length: n }, (_, i) => (range > n ? Math.round((i * (range - 1)) / (n - 1)) : i < range ? i : Math.floor(r() * range)));
  for (let i = values.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [values[i], values[j]] = [values[j]!, values[i]!];
  }
  return values;
}

function u8(values: number[]): Buffer {
  return Buffer.from(values.map((v) => v & 0xff));
}
function u16(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v & 0xffff, i * 2));
  return b;
}
function u32(values: number[]): Buffer {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v >>> 0, i * 4));
  return b;
}
/** Stored value `v` (two's complement when negative) at bits [highBit-bits+1, highBit] of a 16-bit cell, random bits elsewhere. */
function cells(values: number[], bits: number, highBit: number, seed: number): number[] {
  const r = random(seed);
  const shift = highBit + 1 - bits;
  const keep = ((2 ** bits - 1) << shift) & 0xffff;
  return values.map((v) => (((v << shift) & keep) | (Math.floor(r() * 65536) & ~keep)) & 0xffff);
}

const N = 64 * 64;

describe('greyscale display matches dcmtk', () => {
  compare({
    name: '8-bit unsigned, data set window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 8, pixels: u8(greyValues(N, 8, 1)), windows: [[100, 120]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: '8-bit unsigned, min-max',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 8, pixels: u8(greyValues(N, 8, 2).map((v) => 20 + (v % 200))) }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: '8-bit signed, explicit window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 8, signed: true, pixels: u8(greyValues(N, 8, 3).map((v) => v - 128)) }),
    options: ['+Ww', '-10', '150'],
    window: { center: -10, width: 150, fn: 'LINEAR' },
  });
  compare({
    name: '16-bit unsigned 12 stored, high bits set, CT rescale, data set window',
    image: () => ({
      photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12,
      pixels: u16(cells(greyValues(N, 12, 4), 12, 11, 40)), windows: [[40, 400]], rescale: [1, -1024],
    }),
    options: ['+Wi', '1'],
  });
  compare({
    name: '16-bit unsigned 12 stored, CT rescale, explicit window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 5)), rescale: [1, -1024] }),
    options: ['+Ww', '300', '1500', '+Wfl'],
    window: { center: 300, width: 1500, fn: 'LINEAR' },
  });
  compare({
    name: '16-bit unsigned 12 stored, CT rescale, min-max',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 6).map((v) => Math.min(v, 3000))), rescale: [1, -1024] }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: '16-bit unsigned 16 stored, min-max',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, pixels: u16(greyValues(N, 16, 7)) }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: '16-bit signed 16 stored, data set window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, signed: true, pixels: u16(greyValues(N, 16, 8).map((v) => v - 32768)), windows: [[-2000, 30000]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: '16-bit signed 12 stored, sign bit 11, high bits set, min-max',
    image: () => ({
      photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, signed: true,
      pixels: u16(cells(greyValues(N, 12, 9).map((v) => v - 2048), 12, 11, 41)),
    }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: '16-bit signed 12 stored at bits 2-13 (HighBit 13), data set window',
    image: () => ({
      photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, highBit: 13, signed: true,
      pixels: u16(cells(greyValues(N, 12, 10).map((v) => v - 2048), 12, 13, 42)), windows: [[100, 2500]],
    }),
    options: ['+Wi', '1'],
  });
  compare({
    name: '32-bit unsigned, data set window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 32, pixels: u32(greyValues(N, 16, 11).map((v) => v * 40000 + (v % 7))), windows: [[1.3e9, 2e9]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: '32-bit signed, rescale, min-max',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 32, signed: true, pixels: u32(greyValues(N, 16, 12).map((v) => (v - 30000) * 1000)), rescale: [2, 5] }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: 'fractional rescale (slope 0.5, intercept -100.25), data set window',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 13)), rescale: [0.5, -100.25], windows: [[800, 1600]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: 'MONOCHROME1, data set window',
    image: () => ({ photometric: 'MONOCHROME1', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 14)), windows: [[2000, 3000]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: 'MONOCHROME1, min-max',
    image: () => ({ photometric: 'MONOCHROME1', bitsAllocated: 16, bitsStored: 10, pixels: u16(greyValues(N, 10, 15)) }),
    options: ['+Wm'],
    noDataSetWindow: true,
  });
  compare({
    name: 'three windows: the first is the default',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 16)), rescale: [1, -1024], windows: [[40, 400], [-600, 1500], [300, 2000]] }),
    options: ['+Wi', '1'],
  });
  compare({
    name: 'three windows: the second, asked for',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 16)), rescale: [1, -1024], windows: [[40, 400], [-600, 1500], [300, 2000]] }),
    options: ['+Wi', '2'],
    window: { center: -600, width: 1500, fn: 'LINEAR' },
  });
  compare({
    name: 'VOILUTFunction SIGMOID from the data set',
    image: () => ({ photometric: 'MONOCHROME2', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 17)), windows: [[2048, 1200]], voiFunction: 'SIGMOID' }),
    options: ['+Wi', '1'],
  });
  compare({
    name: 'SIGMOID window asked for, MONOCHROME1',
    image: () => ({ photometric: 'MONOCHROME1', bitsAllocated: 16, signed: true, bitsStored: 12, pixels: u16(greyValues(N, 12, 18).map((v) => v - 2048)), rescale: [1.5, 10] }),
    options: ['+Ww', '100', '2500', '+Wfs'],
    window: { center: 100, width: 2500, fn: 'SIGMOID' },
  });
  compare({
    name: '1-bit packed, min-max',
    image: () => {
      const r = random(19);
      return { photometric: 'MONOCHROME2', bitsAllocated: 1, pixels: Buffer.from(Array.from({ length: N / 8 }, () => Math.floor(r() * 256))) };
    },
    options: ['+Wm'],
    noDataSetWindow: true,
    minDistinct: 2,
  });
});

// ---------------------------------------------------------------- colour

function rgbPlanes(n: number, seed: number, max = 255): [number[], number[], number[]] {
  const r = random(seed);
  // Smooth ramps plus noise, over the whole range, so clamping and rounding are both exercised.
  const plane = (k: number) => Array.from({ length: n }, (_, i) => Math.min(max, Math.max(0, Math.round(((i * (k + 1)) % n) / n * max + (r() - 0.5) * max * 0.2))));
  return [plane(0), plane(1), plane(2)];
}
const interleave = ([a, b, c]: number[][]) => a!.flatMap((v, i) => [v, b![i]!, c![i]!]);
const planar = ([a, b, c]: number[][]) => [...a!, ...b!, ...c!];

/** YBR 4:2:2 samples: Y1 Y2 Cb Cr for each pair of pixels. */
function ybr422(n: number, seed: number): number[] {
  const r = random(seed);
  const out: number[] = [];
  for (let i = 0; i < n; i += 2) out.push(Math.floor(r() * 256), Math.floor(r() * 256), Math.floor(r() * 256), Math.floor(r() * 256));
  return out;
}

describe('colour display matches dcmtk', () => {
  compare({
    name: 'RGB 8-bit interleaved',
    image: () => ({ photometric: 'RGB', bitsAllocated: 8, samples: 3, planar: 0, pixels: u8(interleave(rgbPlanes(N, 20))) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'RGB 8-bit planar',
    image: () => ({ photometric: 'RGB', bitsAllocated: 8, samples: 3, planar: 1, pixels: u8(planar(rgbPlanes(N, 21))) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'RGB 16-bit interleaved',
    image: () => ({ photometric: 'RGB', bitsAllocated: 16, samples: 3, planar: 0, pixels: u16(interleave(rgbPlanes(N, 22, 65535))) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'RGB 16-bit, 12 stored, planar',
    image: () => ({ photometric: 'RGB', bitsAllocated: 16, bitsStored: 12, samples: 3, planar: 1, pixels: u16(planar(rgbPlanes(N, 23, 4095))) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'YBR_FULL 8-bit interleaved',
    image: () => ({ photometric: 'YBR_FULL', bitsAllocated: 8, samples: 3, planar: 0, pixels: u8(interleave(rgbPlanes(N, 24))) }),
    options: [],
    tolerance: 2,
    why: 'dcmtk centres chroma on 127.5, not 128, and truncates each term',
  });
  compare({
    name: 'YBR_FULL 8-bit planar',
    image: () => ({ photometric: 'YBR_FULL', bitsAllocated: 8, samples: 3, planar: 1, pixels: u8(planar(rgbPlanes(N, 25))) }),
    options: [],
    tolerance: 2,
    why: 'dcmtk centres chroma on 127.5, not 128, and truncates each term',
  });
  compare({
    name: 'YBR_FULL_422 8-bit native',
    image: () => ({ photometric: 'YBR_FULL_422', bitsAllocated: 8, samples: 3, planar: 0, pixels: u8(ybr422(N, 26)) }),
    options: [],
    tolerance: 2,
    why: 'dcmtk centres chroma on 127.5, not 128, and truncates each term',
  });
  compare({
    name: 'YBR_PARTIAL_422 8-bit native',
    image: () => ({ photometric: 'YBR_PARTIAL_422', bitsAllocated: 8, samples: 3, planar: 0, pixels: u8(ybr422(N, 27)) }),
    options: [],
    tolerance: 2,
    why: 'dcmtk centres chroma on 127.5, not 128, and truncates each term',
  });
});

// ---------------------------------------------------------------- palette

/** Descriptor and data of the three tables; 8-bit entries are packed two to a word, as C.7.6.3.1.5 asks. */
function paletteElements(o: { entries: number; firstMapped: number; bits: 8 | 16; descriptorVr?: 'US' | 'SS'; wordPerEntry?: boolean }): WriteElement[] {
  const max = o.bits === 16 ? 65535 : 255;
  const curves = [
    (t: number) => t,
    (t: number) => 1 - t,
    (t: number) => 0.5 + 0.5 * Math.sin(t * 6 * Math.PI),
  ];
  const out: WriteElement[] = [];
  curves.forEach((curve, c) => {
    const values = Array.from({ length: o.entries }, (_, i) => Math.round(curve(i / (o.entries - 1)) * max));
    const data = o.bits === 16 || o.wordPerEntry ? u16(values) : u8(values.length % 2 ? [...values, 0] : values);
    out.push({ tag: `0028110${c + 1}`, vr: o.descriptorVr ?? 'US', value: [o.entries === 65536 ? 0 : o.entries, o.firstMapped, o.bits] });
    out.push({ tag: `0028120${c + 1}`, vr: 'OW', value: data });
  });
  return out;
}

describe('PALETTE COLOR display matches dcmtk', () => {
  compare({
    name: 'PALETTE COLOR 8-bit pixels, 8-bit entries (inline), first mapped 30',
    image: () => ({ photometric: 'PALETTE COLOR', bitsAllocated: 8, pixels: u8(greyValues(N, 8, 30)), extra: paletteElements({ entries: 200, firstMapped: 30, bits: 8 }) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'PALETTE COLOR 8-bit entries one to a word',
    image: () => ({ photometric: 'PALETTE COLOR', bitsAllocated: 8, pixels: u8(greyValues(N, 8, 31)), extra: paletteElements({ entries: 256, firstMapped: 0, bits: 8, wordPerEntry: true }) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'PALETTE COLOR 16-bit pixels (12 stored), 16-bit entries (bulk data), first mapped 1000',
    image: () => ({ photometric: 'PALETTE COLOR', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 32)), extra: paletteElements({ entries: 2048, firstMapped: 1000, bits: 16 }) }),
    options: [],
    tolerance: 0,
  });
  compare({
    name: 'PALETTE COLOR signed pixels, SS descriptor, first mapped -100',
    image: () => ({
      photometric: 'PALETTE COLOR', bitsAllocated: 16, signed: true, bitsStored: 16, pixels: u16(greyValues(N, 12, 33).map((v) => v - 2048)),
      extra: paletteElements({ entries: 1024, firstMapped: -100, bits: 16, descriptorVr: 'SS' }),
    }),
    options: [],
    tolerance: 0,
  });
});

describe('display without a reference tool', () => {
  it('reads a palette table from its BulkDataURI when it is too large to travel inline', async () => {
    const file = dicomFile({ photometric: 'PALETTE COLOR', bitsAllocated: 16, bitsStored: 12, pixels: u16(greyValues(N, 12, 34)), extra: paletteElements({ entries: 2048, firstMapped: 0, bits: 16 }) });
    const json = toDicomJson(parsePart10(file).dataSet, { bulkDataBase: 'instance' });
    expect(json['00281201']).toEqual({ vr: 'OW', BulkDataURI: 'instance/bulkdata/00281201' });
    const { module } = await readBack(file);
    expect(module.palette!.red).toMatchObject({ entries: 2048, firstMapped: 0, bits: 16 });
    expect(module.palette!.green.data[0]).toBe(65535);
  });

  it('applies LINEAR_EXACT as PS3.3 C.11.2.1.3.2 defines it (dcmtk knows only LINEAR and SIGMOID)', () => {
    const values = [-1000, 49, 50, 51, 100, 150, 151, 2000];
    const module = greyModule(values.length);
    const frame = greyFrame(new Int16Array(values), module);
    const { data } = toDisplay(frame, module, { center: 100, width: 100, fn: 'LINEAR_EXACT' });
    // y = ((x − c) / w + 0.5) · 255 inside (c − w/2, c + w/2]; 0 at or below, 255 above.
    expect([...data]).toEqual([0, 0, 0, Math.round(0.01 * 255), Math.round(0.5 * 255), 255, 255, 255]);
  });

  it('differs from LINEAR where the two definitions differ', () => {
    const module = greyModule(2);
    const frame = greyFrame(new Int16Array([9, 11]), module);
    const linear = toDisplay(frame, module, { center: 10, width: 4, fn: 'LINEAR' }).data;
    const exact = toDisplay(frame, module, { center: 10, width: 4, fn: 'LINEAR_EXACT' }).data;
    // LINEAR: ((x − (c − 0.5)) / (w − 1) + 0.5) · 255, white above c − 0.5 + (w − 1)/2 = 11; LINEAR_EXACT: ((x − c) / w + 0.5) · 255.
    expect([...linear]).toEqual([Math.round((-0.5 / 3 + 0.5) * 255), 255]);
    expect([...exact]).toEqual([Math.round((-1 / 4 + 0.5) * 255), Math.round((1 / 4 + 0.5) * 255)]);
  });

  it('turns YBR_RCT back into RGB when the codec left the reversible transform in place', () => {
    // R − G and B − G within ±127, so the chroma samples fit the 8 bits stored.
    const rgb = [[200, 100, 30], [0, 120, 128], [17, 99, 200], [255, 255, 255]];
    // Forward RCT (ISO 15444-1 G.2) with the DC level shift put back, as a codec without the inverse transform returns it.
    const ybr = rgb.flatMap(([r, g, b]) => [Math.floor((r! + 2 * g! + b!) / 4), b! - g! + 128, r! - g! + 128]);
    const module: PixelModule = { ...greyModule(4), samplesPerPixel: 3, bitsStored: 8, highBit: 7, bitsAllocated: 8, pixelRepresentation: 0, photometric: 'YBR_RCT' };
    const frame: DecodedFrame = { pixels: new Uint16Array(ybr), rows: 1, columns: 4, samplesPerPixel: 3, planar: false, photometric: 'YBR_RCT' };
    expect([...toDisplay(frame, module).data]).toEqual(rgb.flat());
  });

  it('refuses a frame that does not match Rows and Columns, or holds too few samples', () => {
    const module = greyModule(4);
    expect(() => toDisplay({ ...greyFrame(new Int16Array(4), module), rows: 2, columns: 2 }, module)).toThrow(/2×2 but Columns×Rows say 4×1/);
    expect(() => toDisplay(greyFrame(new Int16Array(3), module), module)).toThrow(/holds 3 samples/);
  });

  it('refuses a window whose width the function cannot use', () => {
    const module = greyModule(1);
    const frame = greyFrame(new Int16Array(1), module);
    expect(() => toDisplay(frame, module, { center: 0, width: 0.5, fn: 'LINEAR' })).toThrow(expect.objectContaining({ status: 400 }));
    expect(() => toDisplay(frame, module, { center: 0, width: 0, fn: 'SIGMOID' })).toThrow(expect.objectContaining({ status: 400 }));
    expect(toDisplay(frame, module, { center: 0, width: 0.5, fn: 'LINEAR_EXACT' }).data.length).toBe(1);
  });
});

function greyModule(columns: number): PixelModule {
  return {
    rows: 1, columns, samplesPerPixel: 1, bitsAllocated: 16, bitsStored: 16, highBit: 15, pixelRepresentation: 1,
    photometric: 'MONOCHROME2', planarConfiguration: 0, numberOfFrames: 1, rescaleSlope: 1, rescaleIntercept: 0, windows: [], voiFunction: 'LINEAR',
  };
}
function greyFrame(pixels: Int16Array, module: PixelModule): DecodedFrame {
  return { pixels, rows: module.rows, columns: module.columns, samplesPerPixel: 1, planar: false, photometric: 'MONOCHROME2' };
}
