import { execFile, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/*
 * The whole rendered chain (HTTP → frame read → decode → display → PNG) against dcmtk, for every fixture with pixel
 * data: each frame the server draws is drawn by a reference too, with the same window, and compared pixel by pixel.
 *
 * References (Debian bookworm: dcmtk 3.6.7, GDCM 3.0.21). dcmtk 3.6.7 splits its decoders over three tools:
 *   dcm2pnm   native (LE, BE, implicit, deflate) and RLE
 *   dcmj2pnm  JPEG baseline, extended, lossless (process 14, SV1): IJG's libjpeg 6b, where we run libjpeg-turbo
 *   dcml2pnm  JPEG-LS: dcmtk's CharLS fork
 *   J2K       dcmtk reads none: `gdcmconv --raw` (GDCM's OpenJPEG) makes a native copy, which dcm2pnm draws
 *   HTJ2K     no Debian tool reads it (dcmtk 3.6.7 and GDCM 3.0.21 both refuse the file). Each HTJ2K fixture was coded
 *             from the same phantom as a native fixture (make-fixtures.sh: `mkfrom base16|rgb8|signed16`), so that
 *             file, drawn by dcm2pnm, is the reference: exact for the lossless ones, within the coding error otherwise.
 * dcmtk truncates where we round, hence a tolerance of 1 for greyscale; RGB must match exactly; where a case needs
 * more, it says why.
 *
 * Windows: the server's default (src/render/display.ts) is the data set's first window, else the frame's min/max.
 * Every greyscale frame is compared twice: as stored, against `+Wi 1`, and as a copy with its windows erased (made
 * here), against `+Wm`, the stricter test, since every stored value then lands somewhere on the grey scale.
 * RENDER_DELTAS=1 prints the table of deltas.
 */

type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string; rows: number; columns: number; numberOfFrames: number };
type Target = { studyUID: string; seriesUID: string; sopInstanceUID: string };
type Raw = { data: Buffer; width: number; height: number; channels: 1 | 2 | 3 | 4 };
type Tool = 'dcm2pnm' | 'dcmj2pnm' | 'dcml2pnm';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const ROOT = path.resolve(import.meta.dirname, '../..');
const HTJ2K_TOOL = path.join(ROOT, 'test/fixtures/tools/htj2k.ts');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const WORK = mkdtempSync(path.join(tmpdir(), 'rendered-pixels-'));
const run = promisify(execFile);

const NATIVE = ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.1.99', '1.2.840.10008.1.2.2'];
const RLE = ['1.2.840.10008.1.2.5'];
const JPEG = ['1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.57', '1.2.840.10008.1.2.4.70'];
const JPEG_LS = ['1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.81'];
const J2K = ['1.2.840.10008.1.2.4.90', '1.2.840.10008.1.2.4.91'];
const HTJ2K = ['1.2.840.10008.1.2.4.201', '1.2.840.10008.1.2.4.202', '1.2.840.10008.1.2.4.203'];
/** The native fixture each HTJ2K fixture was coded from (make-fixtures.sh). */
const HTJ2K_SOURCE: Record<string, string> = {
  'htj2k-lossless.dcm': 'explicit-le.dcm',
  'htj2k-lossless-rpcl-rgb.dcm': 'explicit-le-rgb.dcm',
  'htj2k-lossy-signed16.dcm': 'explicit-le-signed16.dcm',
};
/** What the comparison needs to know of a DICOM file before anything is rendered, as dcmdump reads it. */
function attributes(file: string) {
  const dump = execFileSync('dcmdump', ['-q', '+P', '0028,0004', '+P', '0028,1050', '+P', '0028,2110', '+P', '7fe0,0010', '+P', 'fffe,e000', file], { encoding: 'utf8' });
  const fragments = Number(/PixelSequence #=(\d+)/.exec(dump)?.[1] ?? 0) - 1;
  return {
    photometric: /\(0028,0004\) CS \[([^\]]+)\]/.exec(dump)?.[1] ?? '',
    hasWindow: /\(0028,1050\) DS \[/.test(dump),
    lossy: /\(0028,2110\) CS \[01\]/.test(dump),
    fragments,
    emptyOffsetTable: /\(fffe,e000\) pi \(no value available\)/.test(dump),
  };
}

let pngCount = 0;
/** The reference tool's PNG of one frame (1-based), read back as raw samples. */
async function reference(tool: Tool, file: string, frame: number, voi: string[]): Promise<Raw> {
  const out = path.join(WORK, `reference-${++pngCount}.png`);
  await run(tool, ['-q', '+on', '+F', String(frame), ...voi, file, out]);
  return raw(readFileSync(out));
}

async function raw(image: Buffer): Promise<Raw> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

function deltas(ours: Raw, theirs: Raw): { max: number; mean: number } {
  expect([ours.width, ours.height, ours.channels]).toEqual([theirs.width, theirs.height, theirs.channels]);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < ours.data.length; i++) {
    const d = Math.abs(ours.data[i]! - theirs.data[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / ours.data.length };
}

const instancePath = (t: Target) => `/studies/${t.studyUID}/series/${t.seriesUID}/instances/${t.sopInstanceUID}`;

async function fetchPng(url: string): Promise<Buffer> {
  const response = await adminFetch(url, { headers: { Accept: 'image/png' } });
  const bytes = Buffer.from(await response.arrayBuffer());
  expect(response.status, `${url}: ${bytes.toString('utf8', 0, 300)}`).toBe(200);
  expect(response.headers.get('content-type')).toBe('image/png');
  return bytes;
}

/** Work for beforeAll, run once however many cases wait on it. */
function once(step: () => Promise<unknown>): () => Promise<unknown> {
  let started: Promise<unknown> | undefined;
  return () => (started ??= step());
}

const gdcmRaw = (from: string, to: string) => run('gdcmconv', ['--raw', from, to]);
const setUids = (file: string, t: Target, ...more: string[]) =>
  run('dcmodify', ['-q', '-nb', ...more, '-m', `(0020,000D)=${t.studyUID}`, '-m', `(0020,000E)=${t.seriesUID}`, '-m', `(0008,0018)=${t.sopInstanceUID}`, file]);
/** A copy under new UIDs with its windows erased, so that the server falls back to min/max. */
async function eraseWindow(from: string, to: string, t: Target) {
  copyFileSync(from, to);
  await setUids(to, t, '-e', '(0028,1050)', '-e', '(0028,1051)');
}

type Case = {
  input: string;
  frame: number;
  /** The instance the server renders: the fixture, or a copy made here. */
  target: Target;
  /** What the server picks when the request names no window, and the dcmtk option that picks the same. */
  window: 'data set' | 'min/max' | 'none (colour)';
  voi: string[];
  tool: Tool;
  /** The file the tool reads; made in beforeAll where it is not the fixture. */
  referenceFile: string;
  via?: string;
  tolerance: number;
  why?: string;
};

type Input = {
  name: string;
  file: string;
  syntax: string;
  target: Target;
  frames: number[];
  attributes: ReturnType<typeof attributes>;
  /** HTJ2K: the native file it was coded from, which the reference reads. */
  source?: string;
  /** Makes `file` when it is not a fixture. */
  make?: () => Promise<unknown>;
};

const cases: Case[] = [];
const steps: Array<() => Promise<unknown>> = [];
/** Files made here that the server stores beside the fixtures. */
const made: string[] = [];

/** The reference for one input (a fixture or a copy of one), its cases, and the steps that make their files. */
function plan(input: Input, window: 'as stored' | 'erased') {
  const { name, file, syntax, attributes: a } = input;
  const colour = !a.photometric.startsWith('MONOCHROME');
  const ready = input.make ?? (async () => undefined);
  const local = (suffix: string) => path.join(WORK, `${path.basename(file, '.dcm')}.${suffix}.dcm`);
  let tool: Tool = 'dcm2pnm';
  let referenceFile = file;
  let via: string | undefined;
  if (HTJ2K.includes(syntax)) {
    if (!input.source) throw new Error(`${name}: an HTJ2K fixture needs its native source in HTJ2K_SOURCE`);
    via = `source ${HTJ2K_SOURCE[name]}`;
    referenceFile = input.source;
  } else if (a.emptyOffsetTable && a.fragments > input.frames.length && input.frames.some((f) => f > 1)) {
    // dcmtk 3.6.7 cannot find frame n > 1 when frames span several fragments and no offset table says where each
    // starts ("Invalid DICOM image"): its own decoder makes a native copy first.
    const decoder = JPEG_LS.includes(syntax) ? 'dcmdjpls' : JPEG.includes(syntax) ? 'dcmdjpeg' : 'dcmdrle';
    via = decoder;
    referenceFile = local(decoder);
    steps.push(once(async () => (await ready(), run(decoder, ['-q', file, referenceFile]))));
  } else if (NATIVE.includes(syntax) || RLE.includes(syntax)) {
    tool = 'dcm2pnm';
  } else if (JPEG.includes(syntax)) {
    tool = 'dcmj2pnm';
  } else if (JPEG_LS.includes(syntax)) {
    tool = 'dcml2pnm';
  } else if (J2K.includes(syntax)) {
    via = 'gdcmconv --raw';
    referenceFile = local('gdcm-raw');
    steps.push(once(async () => (await ready(), gdcmRaw(file, referenceFile))));
  } else {
    throw new Error(`${name}: no reference decoder for transfer syntax ${syntax}; add one before adding such a fixture`);
  }

  // RGB samples are copied, not computed (YBR_RCT too: the codec undoes the reversible transform exactly).
  let tolerance = colour ? 0 : 1;
  let why: string | undefined;
  if (a.photometric.startsWith('YBR_FULL')) [tolerance, why] = [2, 'chroma upsampling and YCbCr → RGB: IJG 6b there, libjpeg-turbo here'];
  if (HTJ2K.includes(syntax) && a.lossy) {
    // OpenJPEG 2.5's opj_decompress and our OpenJPH agree within 1 stored value on this file; both differ from the
    // source by up to 11 stored values, 7 grey levels in a window 400 wide, under 2 over the min/max range.
    [tolerance, why] = a.hasWindow && window === 'as stored' ? [7, 'lossy HTJ2K against its source: coding error up to 11 stored values'] : [2, 'lossy HTJ2K against its source'];
  }
  const voi = colour ? [] : window === 'erased' || !a.hasWindow ? ['+Wm'] : ['+Wi', '1'];
  const label = colour ? 'none (colour)' : voi[0] === '+Wm' ? 'min/max' : 'data set';
  for (const frame of input.frames) {
    cases.push({ input: name, frame, target: input.target, window: label, voi, tool, referenceFile, via, tolerance, why });
  }
  if (input.make) steps.push(once(input.make));
}

/** The fixture again, windows erased, for the min/max cases. */
function windowless(input: Input): Input {
  const target = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid() };
  const base = path.join(WORK, path.basename(input.file, '.dcm'));
  const file = `${base}.no-window.dcm`;
  made.push(file);
  const ready = input.make ?? (async () => undefined);
  if (input.source) {
    // dcmtk cannot rewrite an HTJ2K file: erase the source's window and code it again, as make-fixtures.sh does.
    const source = `${base}.source.no-window.dcm`;
    const make = once(async () => {
      await eraseWindow(input.source!, source, target);
      await run(process.execPath, ['--import', 'tsx', HTJ2K_TOOL, input.syntax.split('.').pop()!, source, file], { cwd: ROOT });
    });
    return { ...input, file, target, source, make };
  }
  return { ...input, file, target, make: once(async () => (await ready(), eraseWindow(input.file, file, target))) };
}

const withPixels = manifest.filter((f) => f.rows > 0 && f.columns > 0);
/** First frame, and a middle one of a multi-frame instance. */
const framesOf = (n: number) => (n > 1 ? [1, Math.ceil(n / 2)] : [1]);

const inputs: Input[] = withPixels.map((f) => {
  const file = path.join(FIXTURES, f.path);
  const source = HTJ2K_SOURCE[f.path] && path.join(FIXTURES, HTJ2K_SOURCE[f.path]);
  return { name: f.path, file, syntax: f.transferSyntaxUID, target: f, frames: framesOf(f.numberOfFrames), attributes: attributes(file), source };
});
for (const input of inputs) {
  plan(input, 'as stored');
  if (input.attributes.photometric.startsWith('MONOCHROME') && input.attributes.hasWindow) plan(windowless(input), 'erased');
}

let server: RunningServer;
const table: Array<Record<string, string | number>> = [];

beforeAll(async () => {
  const [started] = await Promise.all([startServer(), ...steps.map((step) => step())]);
  server = started;
  const files = [...withPixels.map((f) => path.join(FIXTURES, f.path)), ...made].map((file) => readFileSync(file));
  const response = await stow(server.dicomweb, files);
  expect(response.status, await response.clone().text()).toBe(200);
});

afterAll(async () => {
  await server?.stop();
  rmSync(WORK, { recursive: true, force: true });
  if (process.env.RENDER_DELTAS) console.table(table);
});

describe('rendered frames match a reference renderer', () => {
  it('covers every fixture with pixel data, and every transfer syntax of the fixtures has a reference', () => {
    expect(new Set(cases.map((c) => c.input))).toEqual(new Set(inputs.map((i) => i.name)));
    const known = [...NATIVE, ...RLE, ...JPEG, ...JPEG_LS, ...J2K, ...HTJ2K];
    expect(new Set(withPixels.map((f) => f.transferSyntaxUID))).toEqual(new Set(known));
  });

  for (const c of cases) {
    const how = `${c.via ? `${c.via} → ` : ''}${c.tool}${c.voi.map((o) => ` ${o}`).join('')}`;
    it(`${c.input} frame ${c.frame}, window ${c.window}: as ${how} draws it${c.why ? ` (±${c.tolerance}: ${c.why})` : ''}`, async () => {
      const ours = await raw(await fetchPng(`${server.dicomweb}${instancePath(c.target)}/frames/${c.frame}/rendered`));
      const theirs = await reference(c.tool, c.referenceFile, c.frame, c.voi);
      const { max, mean } = deltas(ours, theirs);
      table.push({ input: c.input.split(' ')[0]!, frame: c.frame, window: c.window, reference: how, max, mean: Number(mean.toFixed(3)), tolerance: c.tolerance });
      // A reference that is nearly one grey would let a broken pipeline pass.
      const distinct = new Set(theirs.data).size;
      expect(distinct).toBeGreaterThanOrEqual(16);
      expect(max).toBeLessThanOrEqual(c.tolerance);
    });
  }
});

describe('thumbnails and formats', () => {
  it('draws a thumbnail of each fixture as its rendering scaled to fit 128×128', async () => {
    for (const c of cases.filter((c) => c.frame === 1 && c.window !== 'min/max')) {
      const thumbnail = await raw(await fetchPng(`${server.dicomweb}${instancePath(c.target)}/thumbnail`));
      const full = await reference(c.tool, c.referenceFile, 1, c.voi);
      const scale = Math.min(1, 128 / full.width, 128 / full.height);
      expect([thumbnail.width, thumbnail.height], c.input).toEqual([Math.round(full.width * scale), Math.round(full.height * scale)]);
      // Scaled as the server scales (sharp's default kernel), so that only the drawing can differ; the kernel's
      // negative lobes can make a difference of 1 into 2.
      const expected = scale === 1 ? full : await raw(await sharp(full.data, { raw: full }).resize(thumbnail.width, thumbnail.height, { fit: 'fill' }).png().toBuffer());
      const { max, mean } = deltas(thumbnail, expected);
      table.push({ input: `${c.input.split(' ')[0]!} (thumbnail)`, frame: 1, window: c.window, reference: `sharp resize of ${c.tool}`, max, mean: Number(mean.toFixed(3)), tolerance: c.tolerance + (scale === 1 ? 0 : 1) });
      expect(max, c.input).toBeLessThanOrEqual(c.tolerance + (scale === 1 ? 0 : 1));
    }
  });

  it('encodes one rendering as PNG, JPEG and WebP of the same picture', async () => {
    const f = manifest.find((m) => m.path === 'explicit-le-rgb.dcm')!;
    const url = `${server.dicomweb}${instancePath(f)}/rendered`;
    const decoded: Record<string, Raw> = {};
    for (const [format, type] of [['png', 'image/png'], ['jpeg', 'image/jpeg'], ['webp', 'image/webp']] as const) {
      const response = await adminFetch(url, { headers: { Accept: type } });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe(type);
      const bytes = Buffer.from(await response.arrayBuffer());
      expect((await sharp(bytes).metadata()).format).toBe(format);
      decoded[format] = await raw(bytes);
    }
    // PNG is lossless: exactly the reference. JPEG and WebP (quality 90) only have to be the same picture.
    expect(deltas(decoded.png!, await reference('dcm2pnm', path.join(FIXTURES, f.path), 1, [])).max).toBe(0);
    for (const format of ['jpeg', 'webp']) {
      const image = decoded[format]!;
      expect([image.width, image.height, image.channels], format).toEqual([f.columns, f.rows, 3]);
      const { max, mean } = deltas(image, decoded.png!);
      table.push({ input: `${f.path} (${format} against png)`, frame: 1, window: 'none (colour)', reference: 'the png', max, mean: Number(mean.toFixed(3)), tolerance: 'mean < 8' });
      expect(mean, format).toBeLessThan(8);
    }
  });
});
