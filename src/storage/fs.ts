import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { CoalescedSync } from './coalesced-sync.js';
import { ObjectNotFound, type ByteRange, type ObjectStore } from './object-store.js';

/** Patient data is readable by the server's user only, whatever the umask: files 0600, folders 0700. */
const FILE_MODE = 0o600;
const FOLDER_MODE = 0o700;

/** Objects as plain files under one folder: temp file, fsync, rename, fsync of the folder. */
export class FileObjectStore implements ObjectStore {
  /** Concurrent batches moving files into one folder share its fsync. */
  private readonly folders = new CoalescedSync();

  constructor(readonly root: string) {}

  async init(): Promise<this> {
    await fs.mkdir(this.root, { recursive: true, mode: FOLDER_MODE });
    return this;
  }

  async putFiles(batch: ReadonlyArray<{ key: string; localPath: string }>): Promise<void> {
    const targets = batch.map((item) => this.pathOf(item.key));
    // A new name is durable once its folder is synced; a new folder, once its parent is too.
    const changed = new Set(targets.map((t) => path.dirname(t)));
    const made = new Map<string, Promise<void>>();
    const makeFolder = (folder: string) => {
      let making = made.get(folder);
      if (!making) {
        making = fs.mkdir(folder, { recursive: true, mode: FOLDER_MODE }).then((first) => {
          if (!first) return;
          for (let dir = folder; dir.length > first.length; dir = path.dirname(dir)) changed.add(path.dirname(dir));
          changed.add(path.dirname(first));
        });
        made.set(folder, making);
      }
      return making;
    };
    // Most instances go into a series folder that is there already: the folder is made only when the move says it is not.
    await Promise.all(
      batch.map(async (item, i) => {
        const target = targets[i]!;
        for (let tries = 1; ; tries++) {
          try {
            await fs.rename(item.localPath, target);
            return;
          } catch (e) {
            // The folder is not there yet, or a delete of the folder's last object took it away meanwhile.
            if ((e as NodeJS.ErrnoException).code !== 'ENOENT' || tries === 3) throw e;
            made.delete(path.dirname(target));
            await makeFolder(path.dirname(target));
          }
        }
      }),
    );
    await Promise.all([...changed].map((folder) => this.folders.sync(folder)));
  }

  async put(key: string, body: Buffer): Promise<void> {
    const target = this.pathOf(key);
    await fs.mkdir(path.dirname(target), { recursive: true, mode: FOLDER_MODE });
    const temp = `${target}.${process.pid}.${Date.now()}.tmp`;
    try {
      await fs.writeFile(temp, body, { mode: FILE_MODE });
      await fs.rename(temp, target);
    } catch (e) {
      // A disk that filled up mid-write leaves no half file behind.
      await fs.rm(temp, { force: true });
      throw e;
    }
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(key);
    const handle = await fs.open(file, 'r').catch((e) => rethrowMissing(e, key));
    // A read stream wants its end at or after its start.
    if (range?.length === 0) {
      await handle.close();
      return Readable.from([]);
    }
    return createReadStream('', {
      fd: handle,
      start: range?.offset,
      end: range ? range.offset + range.length - 1 : undefined,
      highWaterMark: 256 * 1024,
    });
  }

  async head(key: string): Promise<{ size: number; modifiedAt?: number } | undefined> {
    const stat = await fs.stat(this.pathOf(key)).catch(() => undefined);
    return stat?.isFile() ? { size: stat.size, modifiedAt: stat.mtimeMs } : undefined;
  }

  /** The file, and the folders it leaves empty: a deleted study leaves nothing behind. */
  async delete(key: string): Promise<void> {
    const file = this.pathOf(key);
    await fs.rm(file, { force: true });
    for (let folder = path.dirname(file); folder.startsWith(`${this.root}${path.sep}`); folder = path.dirname(folder)) {
      try {
        await fs.rmdir(folder);
      } catch {
        return; // not empty (or gone): the folders above it are not either
      }
    }
  }

  async *list(prefix: string): AsyncIterable<string> {
    const start = this.pathOf(prefix.replace(/\/+$/, '') || '.');
    const entries = await fs.readdir(start, { recursive: true, withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile() || entry.name.endsWith('.tmp')) continue;
      yield path.relative(this.root, path.join(entry.parentPath, entry.name)).split(path.sep).join('/');
    }
  }

  async check(): Promise<void> {
    await fs.access(this.root, fs.constants.W_OK);
  }

  async close(): Promise<void> {}

  private pathOf(key: string): string {
    const full = path.resolve(this.root, key);
    if (full !== this.root && !full.startsWith(this.root + path.sep)) throw new Error(`key ${key} leaves the store`);
    return full;
  }
}

function rethrowMissing(e: NodeJS.ErrnoException, key: string): never {
  if (e.code === 'ENOENT') throw new ObjectNotFound(key);
  throw e;
}
