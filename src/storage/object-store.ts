import type { Readable } from 'node:stream';

export type ByteRange = { offset: number; length: number };

/** Where objects live. Keys come from storage/keys.ts only, so they are always safe paths. */
export interface ObjectStore {
  /**
   * Moves complete local files, already flushed to disk by the caller, into the store. When it resolves,
   * every object is durable: the batch pays for durability once (DESIGN decision 2, group commit).
   */
  putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void>;
  put(key: string, body: Buffer, contentType: string): Promise<void>;
  /** Streams an object or a byte range of it; rejects with ObjectNotFound. */
  get(key: string, range?: ByteRange): Promise<Readable>;
  read(key: string, range: ByteRange): Promise<Buffer>;
  head(key: string): Promise<{ size: number } | undefined>;
  delete(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<string>;
  /** Throws when the store cannot be used, with a reason for the health check. */
  check(): Promise<void>;
}

export class ObjectNotFound extends Error {
  constructor(readonly key: string) {
    super(`object ${key} is missing from the object store`);
  }
}
