import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { ObjectNotFound, type ByteRange, type ObjectStore } from './object-store.js';

/** Objects held in this process: the third store, for tests that need one without a disk or a server. */
export class MemoryObjectStore implements ObjectStore {
  private readonly objects = new Map<string, { body: Buffer; modifiedAt: number }>();

  async putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void> {
    const bodies = await Promise.all(batch.map((item) => fs.readFile(item.localPath)));
    batch.forEach((item, i) => this.objects.set(item.key, { body: bodies[i]!, modifiedAt: Date.now() }));
    // A move, as on the filesystem and S3: the caller keeps only the files that did not get in.
    await Promise.all(batch.map((item) => fs.rm(item.localPath, { force: true })));
  }

  async put(key: string, body: Buffer): Promise<void> {
    this.objects.set(key, { body: Buffer.from(body), modifiedAt: Date.now() });
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    return Readable.from([this.slice(key, range)], { objectMode: false });
  }

  async head(key: string): Promise<{ size: number; modifiedAt?: number } | undefined> {
    const object = this.objects.get(key);
    return object && { size: object.body.length, modifiedAt: object.modifiedAt };
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string): AsyncIterable<string> {
    for (const key of [...this.objects.keys()]) if (key.startsWith(prefix)) yield key;
  }

  async check(): Promise<void> {}

  async close(): Promise<void> {}

  private slice(key: string, range?: ByteRange): Buffer {
    const object = this.objects.get(key);
    if (!object) throw new ObjectNotFound(key);
    return range ? object.body.subarray(range.offset, range.offset + range.length) : object.body;
  }
}
