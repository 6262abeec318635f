import fs from 'node:fs/promises';
import type { Readable } from 'node:stream';
import type { ByteRange, ObjectStore } from '../storage/object-store.js';

/**
 * The source's own object store, as the target of a copy that moves only the index (the configurations name the
 * same folder or bucket). Each object was just read from its key and verified, so storing it again would write the
 * same bytes over themselves: the spooled copy is dropped instead, and everything else goes to the store itself.
 */
export class ObjectsInPlace implements ObjectStore {
  constructor(private readonly store: ObjectStore) {}

  async putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void> {
    await Promise.all(batch.map((item) => fs.rm(item.localPath, { force: true })));
  }

  put(key: string, body: Buffer, contentType: string): Promise<void> {
    return this.store.put(key, body, contentType);
  }

  get(key: string, range?: ByteRange): Promise<Readable> {
    return this.store.get(key, range);
  }

  head(key: string): Promise<{ size: number } | undefined> {
    return this.store.head(key);
  }

  delete(key: string): Promise<void> {
    return this.store.delete(key);
  }

  list(prefix: string): AsyncIterable<string> {
    return this.store.list(prefix);
  }

  check(): Promise<void> {
    return this.store.check();
  }

  close(): Promise<void> {
    return this.store.close();
  }
}
