import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import dicomParser from 'dicom-parser';
import yauzl, { type Entry, type ZipFile } from 'yauzl';
import { formatBytes } from '../ingest/spool.js';

/** A DICOM file to import: where it was found, for the report, and its bytes. */
export type ImportItem = { name: string; open: () => Promise<Readable> };
/** Something not imported, and why, in words the person importing can act on. */
export type Skipped = { name: string; reason: string };

export type Limits = {
  /** Largest file (a DICOM instance, or an archive found inside another) taken out of an archive. */
  maxEntryBytes: number;
  /** Where archives found inside archives, and gzipped files, are unpacked; removed by `close`. */
  workDir: string;
};

/** Archives inside archives: a ZIP in a ZIP is met on CDs; deeper is an attack, not a clinic's disc. */
const MAX_DEPTH = 2;
/**
 * A file or an archive expanding more than this many times is a decompression bomb. Real DICOM compresses about 2 to
 * 10 times; blank images a few hundred; deflate cannot exceed about 1,030, which bombs sit at.
 */
const MAX_RATIO = 200;
/** Below this a high ratio costs nothing and is not refused (a small blank image, a header). */
const RATIO_FREE_BYTES = 16 * 1024 * 1024;
const MAX_ENTRIES = 200_000;
/** "DICM" sits at byte 128 (PS3.10 7.1), the ZIP and gzip signatures at byte 0. */
const PROBE_BYTES = 132;
/** A DICOMDIR lists files in a few hundred bytes each: a million of them is far beyond any disc. */
const MAX_DICOMDIR_BYTES = 256 * 1024 * 1024;

type Kind = 'dicom' | 'zip' | 'gzip' | 'dicomdir' | 'other';

/**
 * The DICOM files under a folder, or in a file, found by their content whatever their names: inside ZIP archives
 * (nested up to MAX_DEPTH) and gzipped files too. An archive is read in place, nothing written out but archives inside
 * it; one whose names leave it (ZIP slip) or that would expand like a bomb is refused whole, before anything in it is
 * stored.
 */
export class ImportSources {
  readonly items: ImportItem[] = [];
  readonly skipped: Skipped[] = [];
  /** Files that are not DICOM, an archive or a DICOMDIR (a CD's viewer, its README). */
  others = 0;
  private readonly zips: ZipFile[] = [];
  private unpacked = 0;

  private constructor(private readonly limits: Limits) {}

  /** `name`: what a file source is called in the report (an upload's file name), rather than its path. */
  static async find(source: string, limits: Limits, name?: string): Promise<ImportSources> {
    const sources = new ImportSources(limits);
    const stat = await fs.stat(source);
    if (stat.isFile()) {
      await sources.addFile(source, name ?? source, 0);
      return sources;
    }
    const files = (await fs.readdir(source, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name)).sort();
    for (const file of files) await sources.addFile(file, file, 0);
    return sources;
  }

  async close(): Promise<void> {
    for (const zip of this.zips) zip.close();
    await fs.rm(this.limits.workDir, { recursive: true, force: true });
  }

  private async addFile(file: string, name: string, depth: number): Promise<void> {
    const size = (await fs.stat(file)).size;
    const kind = kindOf(await readStart(createReadStream(file, { end: PROBE_BYTES - 1 })), name);
    if (kind === 'dicom') this.items.push({ name, open: async () => createReadStream(file) });
    else if (kind === 'zip' || kind === 'gzip') await this.addArchive(kind, file, name, size, depth + 1);
    else if (kind === 'other') this.others++;
    else if (depth === 0) await this.checkDirectory(file, size);
  }

  /**
   * A CD's DICOMDIR, used as its list of files: those found are read by content like any other; one it names that is
   * not on the disc (a copy cut short, a disc that cannot be read to the end) is said, never passed over in silence.
   */
  private async checkDirectory(file: string, size: number): Promise<void> {
    if (size > MAX_DICOMDIR_BYTES) return;
    let ids: string[];
    try {
      const records = dicomParser.parseDicom(await fs.readFile(file)).elements.x00041220?.items ?? [];
      ids = records.map((r) => r.dataSet?.string('x00041500')).filter((id): id is string => !!id);
    } catch (e) {
      this.skipped.push({ name: file, reason: `a DICOMDIR that cannot be read (${(e as Error).message}); the files beside it were looked for by their content` });
      return;
    }
    const folder = path.dirname(file);
    const missing: string[] = [];
    for (const id of ids) {
      const parts = id.split('\\').map((p) => p.trim());
      const exact = path.join(folder, ...parts);
      // Discs are mounted with their names in upper or in lower case.
      const found = await Promise.any([exact, path.join(folder, ...parts.map((p) => p.toLowerCase()))].map((f) => fs.access(f))).then(() => true, () => false);
      if (!found) missing.push(parts.join('/'));
    }
    if (missing.length > 0) {
      this.skipped.push({ name: file, reason: `it names ${missing.length} file(s) that are not beside it: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}; copy the disc again` });
    }
  }

  private async addArchive(kind: 'zip' | 'gzip', file: string, name: string, size: number, depth: number): Promise<void> {
    if (depth > MAX_DEPTH) {
      this.skipped.push({ name, reason: `an archive inside ${depth - 1} others; archives nested deeper than ${MAX_DEPTH} are not opened: unpack it first` });
      return;
    }
    try {
      if (kind === 'gzip') await this.addGzip(file, name, size, depth);
      else await this.addZip(file, name, size, depth);
    } catch (e) {
      if (!(e instanceof ArchiveRefused)) throw e;
      this.skipped.push({ name, reason: e.message });
    }
  }

  private async addGzip(file: string, name: string, size: number, depth: number): Promise<void> {
    const limit = Math.min(this.limits.maxEntryBytes, Math.max(RATIO_FREE_BYTES, size * MAX_RATIO));
    const inner = await this.unpack(createReadStream(file).pipe(createGunzip()), limit, (written) =>
      written > this.limits.maxEntryBytes
        ? `it unpacks to more than the ${formatBytes(this.limits.maxEntryBytes)} limit (PACS_MAX_INSTANCE_BYTES)`
        : `it unpacks to more than ${MAX_RATIO} times its size (a decompression bomb?)`,
    ).catch((e: unknown) => {
      if (e instanceof ArchiveRefused) throw e;
      throw new ArchiveRefused(`not a gzip file that can be read (${(e as Error).message}); nothing from it was stored`);
    });
    await this.addFile(inner, `${name}!/${path.basename(name).replace(/\.t?gz$/i, '')}`, depth);
  }

  private async addZip(file: string, name: string, size: number, depth: number): Promise<void> {
    const zip = await openZip(file).catch((e: Error) => {
      throw new ArchiveRefused(`not a ZIP archive that can be read (${e.message}); nothing from it was stored`);
    });
    this.zips.push(zip);
    const entries = await listEntries(zip).catch((e: Error) => {
      // yauzl refuses names that are absolute or climb out with "..": the archive is refused whole.
      const slip = /absolute path|invalid relative path/.test(e.message);
      throw new ArchiveRefused(slip ? `an entry's name leaves the archive (${e.message}), as an attack's does; nothing from it was stored` : `its list of files cannot be read (${e.message}); nothing from it was stored`);
    });
    const files = entries.filter((e) => !e.fileName.endsWith('/'));
    const expanded = files.reduce((sum, e) => sum + e.uncompressedSize, 0);
    if (expanded > RATIO_FREE_BYTES && expanded > size * MAX_RATIO) {
      throw new ArchiveRefused(`its files would expand to ${formatBytes(expanded)} from ${formatBytes(size)}, more than ${MAX_RATIO} times (a decompression bomb?); nothing from it was stored`);
    }
    const bomb = files.find((e) => e.uncompressedSize > RATIO_FREE_BYTES && e.uncompressedSize > Math.max(e.compressedSize, 1) * MAX_RATIO);
    if (bomb) throw new ArchiveRefused(`${bomb.fileName} would expand ${Math.round(bomb.uncompressedSize / Math.max(bomb.compressedSize, 1))} times (a decompression bomb?); nothing from it was stored`);
    for (const entry of files) {
      const entryName = `${name}!/${entry.fileName}`;
      if (entry.uncompressedSize > this.limits.maxEntryBytes) {
        this.skipped.push({ name: entryName, reason: `larger than the ${formatBytes(this.limits.maxEntryBytes)} limit (PACS_MAX_INSTANCE_BYTES)` });
        continue;
      }
      const open = () => openEntry(zip, entry);
      const kind = kindOf(await readStart(await open()), entry.fileName);
      if (kind === 'dicom') this.items.push({ name: entryName, open });
      else if (kind === 'zip' || kind === 'gzip') {
        const inner = await this.unpack(await open(), entry.uncompressedSize, () => `${entry.fileName} holds more than its header says`);
        await this.addArchive(kind, inner, entryName, entry.uncompressedSize, depth + 1);
      } else if (kind === 'other') this.others++;
    }
  }

  /** Writes a stream to a file of the work folder, refusing it (with `tooLarge`'s words) past `limit` bytes. */
  private async unpack(stream: Readable, limit: number, tooLarge: (written: number) => string): Promise<string> {
    await fs.mkdir(this.limits.workDir, { recursive: true });
    const file = path.join(this.limits.workDir, `${++this.unpacked}`);
    let written = 0;
    const counted = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        written += chunk.length;
        done(written > limit ? new ArchiveRefused(`${tooLarge(written)}; nothing from it was stored`) : null, chunk);
      },
    });
    try {
      await pipeline(stream, counted, createWriteStream(file));
    } catch (e) {
      await fs.rm(file, { force: true });
      throw e;
    }
    return file;
  }
}

class ArchiveRefused extends Error {}

function kindOf(start: Buffer, name: string): Kind {
  if (start.length >= PROBE_BYTES && start.toString('latin1', 128, 132) === 'DICM') return path.basename(name) === 'DICOMDIR' ? 'dicomdir' : 'dicom';
  if (start.length >= 4 && start.readUInt32LE(0) === 0x04034b50) return 'zip';
  // An empty ZIP is its end record alone.
  if (start.length >= 4 && start.readUInt32LE(0) === 0x06054b50) return 'zip';
  if (start.length >= 2 && start[0] === 0x1f && start[1] === 0x8b) return 'gzip';
  return 'other';
}

/** The first PROBE_BYTES of a stream, which is then let go. */
async function readStart(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      length += (chunk as Buffer).length;
      if (length >= PROBE_BYTES) break;
    }
  } catch {
    // A stream that fails at once is judged on what came: ingest says why when it is read.
  } finally {
    stream.destroy();
  }
  return Buffer.concat(chunks).subarray(0, PROBE_BYTES);
}

function openZip(file: string): Promise<ZipFile> {
  return new Promise((resolve, reject) => yauzl.open(file, { lazyEntries: true, autoClose: false }, (err, zip) => (err ? reject(err) : resolve(zip))));
}

/** The central directory's entries, read before any file in the archive is: a bad name refuses it whole. */
function listEntries(zip: ZipFile): Promise<Entry[]> {
  return new Promise((resolve, reject) => {
    const entries: Entry[] = [];
    zip.on('entry', (entry: Entry) => {
      entries.push(entry);
      if (entries.length > MAX_ENTRIES) reject(new Error(`more than ${MAX_ENTRIES} entries`));
      else zip.readEntry();
    });
    zip.once('end', () => resolve(entries));
    zip.once('error', reject);
    zip.readEntry();
  });
}

function openEntry(zip: ZipFile, entry: Entry): Promise<Readable> {
  return new Promise((resolve, reject) => zip.openReadStream(entry, (err, stream) => (err ? reject(err) : resolve(stream))));
}
