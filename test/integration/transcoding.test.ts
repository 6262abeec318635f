import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * PS3.18 8.7.3.4: whatever syntax an instance is stored in, a client that asks for Explicit VR Little Endian (or names
 * no syntax) gets it. Each answer is checked against what dcmtk and GDCM make of the same file: the same pixels, and
 * every other element unchanged, as dcmdump shows them.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string };

/** The tool that converts each stored syntax to Explicit VR Little Endian, and how far its pixels may be from ours. */
function reference(f: Fixture): { convert: (input: string, output: string) => void; tolerance: number } {
  const run = (tool: string, ...args: string[]) => (input: string, output: string) => void execFileSync(tool, [...args, input, output]);
  const ts = f.transferSyntaxUID;
  if (['1.2.840.10008.1.2', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99'].includes(ts)) return { convert: run('dcmconv', '+te'), tolerance: 0 };
  // Lossy JPEG: two decoders (libjpeg-turbo, dcmtk's IJG) round and upsample colour differently by a level or two.
  if (ts === '1.2.840.10008.1.2.4.50' || ts === '1.2.840.10008.1.2.4.51') return { convert: run('dcmdjpeg'), tolerance: 3 };
  if (ts === '1.2.840.10008.1.2.4.57' || ts === '1.2.840.10008.1.2.4.70') return { convert: run('dcmdjpeg'), tolerance: 0 };
  if (ts === '1.2.840.10008.1.2.4.80' || ts === '1.2.840.10008.1.2.4.81') return { convert: run('dcmdjpls'), tolerance: 0 };
  if (ts === '1.2.840.10008.1.2.5') return { convert: run('dcmdrle'), tolerance: 0 };
  if (ts === '1.2.840.10008.1.2.4.90') return { convert: run('gdcmconv', '--raw'), tolerance: 0 };
  if (ts === '1.2.840.10008.1.2.4.91') return { convert: run('gdcmconv', '--raw'), tolerance: 2 };
  // HTJ2K: no Debian tool decodes it; the fixtures were made from these native files (make-fixtures.sh).
  const source = { 'htj2k-lossless.dcm': 'explicit-le.dcm', 'htj2k-lossless-rpcl-rgb.dcm': 'explicit-le-rgb.dcm', 'htj2k-lossy-signed16.dcm': 'explicit-le-signed16.dcm' }[f.path];
  if (source) return { convert: (_input, output) => void execFileSync('cp', [path.join(FIXTURES, source), output]), tolerance: ts === '1.2.840.10008.1.2.4.203' ? 64 : 0 };
  throw new Error(`no reference conversion for ${f.path} (${ts})`);
}

let server: RunningServer;
let work: string;
const fixtures: Fixture[] = [];

beforeAll(async () => {
  const manifest = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Fixture[];
  fixtures.push(...manifest.filter((f) => f.transferSyntaxUID !== EXPLICIT_LE));
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-transcode-'));
  server = await startServer();
  const response = await stow(server.dicomweb, await Promise.all(fixtures.map((f) => fs.readFile(path.join(FIXTURES, f.path)))));
  expect(response.status).toBe(200);
}, 60_000);

afterAll(async () => {
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

const instanceUrl = (f: Fixture) => `${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`;

/** The one part of a retrieve, with its Content-Type. */
async function retrieve(url: string, accept?: string): Promise<{ type: string; bytes: Buffer }> {
  const response = await adminFetch(url, { headers: accept === undefined ? {} : { Accept: accept } });
  expect(response.status, await response.clone().text().then((t) => t.slice(0, 300))).toBe(200);
  const [part, ...rest] = await readMultipartResponse(response);
  expect(rest).toHaveLength(0);
  return { type: part!.headers['content-type']!, bytes: part!.body };
}

/** Samples of a native Part 10 file, colour by pixel whatever its PlanarConfiguration, and what describes them. */
function pixelsOf(bytes: Buffer) {
  const ds = dicomParser.parseDicom(bytes);
  const element = ds.elements.x7fe00010!;
  const rows = ds.uint16('x00280010')!;
  const columns = ds.uint16('x00280011')!;
  const spp = ds.uint16('x00280002')!;
  const bits = ds.uint16('x00280100')!;
  const frames = Number.parseInt(ds.string('x00280008') ?? '1', 10);
  const planar = spp === 3 && ds.uint16('x00280006') === 1;
  const raw = bytes.subarray(element.dataOffset, element.dataOffset + element.length);
  const perFrame = rows * columns * spp;
  const count = perFrame * frames;
  const signed = ds.uint16('x00280103') === 1;
  const read = (i: number) => (bits === 16 ? (signed ? raw.readInt16LE(i * 2) : raw.readUInt16LE(i * 2)) : raw[i]!);
  const samples = new Int32Array(count);
  for (let frame = 0; frame < frames; frame++) {
    for (let p = 0; p < rows * columns; p++) {
      for (let s = 0; s < spp; s++) {
        const from = frame * perFrame + (planar ? s * rows * columns + p : p * spp + s);
        samples[frame * perFrame + p * spp + s] = read(from);
      }
    }
  }
  return { samples, photometric: ds.string('x00280004'), rows, columns, spp, bits, transferSyntax: ds.string('x00020010') };
}

/** dcmdump's lines but the meta information, the pixel data, group lengths and how lengths were encoded. */
function elementsOf(file: string): string[] {
  const dump = execFileSync('dcmdump', ['-q', '+L', '+P', '0000,0000', file], { encoding: 'latin1' });
  return dump
    .split('\n')
    .filter((line) => /^\s*\(/.test(line) && !/^\s*\((0002,|7fe0,0010|[0-9a-f]{4},0000|fffe,e00d|fffe,e0dd|0028,0004|0028,0006)/.test(line))
    .map((line) => line.replace(/\s*#.*$/, '').replace(/\((Sequence|Item) with (explicit|undefined) length #=\d+\)/, '($1)'));
}

describe('an instance stored in any syntax, asked for as Explicit VR Little Endian', () => {
  it('is converted for each stored syntax, to the pixels dcmtk and GDCM decode, every other element unchanged', async () => {
    expect(fixtures.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const f of fixtures) {
      const { type, bytes } = await retrieve(instanceUrl(f), `multipart/related; type="application/dicom"; transfer-syntax=${EXPLICIT_LE}`);
      expect(type, f.path).toBe(`application/dicom; transfer-syntax=${EXPLICIT_LE}`);
      const ours = path.join(work, `ours-${f.path}`);
      const theirs = path.join(work, `theirs-${f.path}`);
      await fs.writeFile(ours, bytes);
      const { convert, tolerance } = reference(f);
      convert(path.join(FIXTURES, f.path), theirs);
      const a = pixelsOf(bytes);
      const b = pixelsOf(await fs.readFile(theirs));
      expect(a.transferSyntax, f.path).toBe(EXPLICIT_LE);
      expect([a.rows, a.columns, a.spp, a.bits, a.samples.length, a.photometric], f.path).toEqual([b.rows, b.columns, b.spp, b.bits, b.samples.length, b.photometric]);
      let worst = 0;
      for (let i = 0; i < a.samples.length; i++) worst = Math.max(worst, Math.abs(a.samples[i]! - b.samples[i]!));
      if (worst > tolerance) problems.push(`${f.path}: pixels differ by up to ${worst} (tolerance ${tolerance})`);
      // HTJ2K's references are other files: only the pixels compare.
      if (!f.path.startsWith('htj2k')) expect(elementsOf(ours), f.path).toEqual(elementsOf(path.join(FIXTURES, f.path)));
    }
    expect(problems).toEqual([]);
  }, 120_000);
});
