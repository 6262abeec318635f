import type { Readable } from 'node:stream';

export type ByteRange = { offset: number; length: number };

/** Where objects live. Keys come from storage/keys.ts only, so they are always safe paths. */
export interface ObjectStore {
  /**
   * Moves complete local files, already flushed to disk by the caller, into the store. When it resolves,
   * every object is durable: the batch pays for durability once (DESIGN decision 2, group commit).
   */
  putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void>;
  /**
   * A best-effort cache write of a derived object (rendering, cached metadata): whole or absent, never flushed for
   * durability, so a crash may lose it and it is made again. Instances go through putFiles only.
   */
  put(key: string, body: Buffer, contentType: string): Promise<void>;
  /**
   * Streams an object, or a byte range of it (one reaching past the end stops there); rejects with ObjectNotFound.
   * The only read: whoever needs a few bytes in one buffer collects the stream.
   */
  get(key: string, range?: ByteRange): Promise<Readable>;
  /** Size and, where the store tells it, when the object was last written (ms since the epoch). */
  head(key: string): Promise<{ size: number; modifiedAt?: number } | undefined>;
  delete(key: string): Promise<void>;
  list(prefix: string): AsyncIterable<string>;
  /** Throws when the store cannot be used, with a reason for the health check. */
  check(): Promise<void>;
  /** Lets go of connections (the S3 client's sockets); the store is not used after. */
  close(): Promise<void>;
}

export class ObjectNotFound extends Error {
  constructor(readonly key: string) {
    super(`object ${key} is missing from the object store`);
  }
}

/**
 * The store cannot be reached now (network, timeout, its own 5xx): a moment's wait, not a fault of the request.
 * HTTP answers 503 with Retry-After; nothing that needed the store was kept.
 */
export class StoreUnavailable extends Error {
  constructor(
    /** How a person knows the store, e.g. `S3 bucket "pacs"`. */
    readonly store: string,
    reason: string,
    options?: ErrorOptions,
  ) {
    super(`the object store (${store}) is unavailable: ${reason}`, options);
  }
}

/** Objects deleted at once: enough to overlap the store's latency, few enough to spare its connections. */
const PARALLEL_DELETES = 16;

/**
 * Deletes every object whose key starts with `prefix` (a folder: ends with `/`), a few at a time. Best effort:
 * each failure, the listing's included, goes to `onError` and never stops the rest. Resolves with the count deleted.
 */
export async function deleteUnder(store: ObjectStore, prefix: string, onError: (err: unknown, key: string) => void): Promise<number> {
  const keys: string[] = [];
  try {
    for await (const key of store.list(prefix)) keys.push(key);
  } catch (err) {
    onError(err, prefix);
  }
  let deleted = 0;
  for (let i = 0; i < keys.length; i += PARALLEL_DELETES) {
    await Promise.all(
      keys.slice(i, i + PARALLEL_DELETES).map((key) =>
        store.delete(key).then(
          () => void deleted++,
          (err: unknown) => onError(err, key),
        ),
      ),
    );
  }
  return deleted;
}
