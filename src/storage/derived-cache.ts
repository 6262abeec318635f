import fs from 'node:fs/promises';
import type { Logger } from 'pino';
import { ObjectNotFound, type ObjectStore } from './object-store.js';

/** Where every derived object lives (storage/keys.ts). */
const DERIVED_PREFIX = 'derived/';
/** Sizes looked up at once while learning what an earlier run (or another replica) cached. */
const PARALLEL_HEADS = 8;

/**
 * Derived objects (renderings, thumbnails) in the object store, held to a size budget, least recently used out
 * first (DESIGN decision 15). What is cached is learned once from a listing, then kept up to date by this
 * process's own reads and writes, so no schema holds it. Replicas share the store: an entry another replica
 * evicted is a miss here, and deleting one that is already gone is harmless.
 */
export class DerivedCache {
  /** key → bytes, in order of last use: a Map iterates in insertion order, and a use re-inserts. */
  private readonly entries = new Map<string, number>();
  private total = 0;
  private learning?: Promise<void>;
  /** Evictions run one at a time, so two puts never delete the same entries twice or miscount. */
  private evicting: Promise<void> = Promise.resolve();

  constructor(
    private readonly store: ObjectStore,
    /** Bytes the derived objects may take together. */
    readonly budget: number,
    private readonly log: Logger,
  ) {}

  /** Bytes this process knows to be cached. */
  get bytes(): number {
    return this.total;
  }

  /** The object, marked as just used; undefined when it is not cached or the store cannot give it now. */
  async get(key: string): Promise<Buffer | undefined> {
    this.learn();
    try {
      const chunks: Buffer[] = [];
      for await (const chunk of await this.store.get(key)) chunks.push(chunk as Buffer);
      const bytes = Buffer.concat(chunks);
      this.remember(key, bytes.length);
      return bytes;
    } catch (err) {
      // A store that cannot be read is a miss: the object is made again rather than refused.
      if (err instanceof ObjectNotFound) this.forget(key);
      else this.log.warn({ err, objectKey: key }, 'derived object could not be read; making it again');
      return undefined;
    }
  }

  /** Stores the object, then evicts the least recently used ones until the cache fits its budget again. */
  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    this.learn();
    // One object larger than the whole budget would evict everything else and then itself.
    if (body.length > this.budget) return;
    await this.store.put(key, body, contentType);
    this.remember(key, body.length);
    await this.evict();
  }

  /**
   * Marks an object as just used without reading it (it is read by ranges): true when it is cached, as this process
   * knows or the store says. One another replica evicted may still be taken for cached: a read that finds it
   * missing says so with `lost`.
   */
  async touch(key: string): Promise<boolean> {
    this.learn();
    const known = this.entries.get(key);
    if (known !== undefined) {
      this.remember(key, known);
      return true;
    }
    const head = await this.store.head(key).catch(() => undefined);
    if (head) this.remember(key, head.size);
    return head !== undefined;
  }

  /** An object a read found missing (evicted by another replica, or removed with its instance). */
  lost(key: string): void {
    this.forget(key);
  }

  /**
   * Moves a local file in as the object (too large for `put`'s one buffer), then evicts as `put` does. False, and the
   * file removed, when it alone is larger than the budget.
   */
  async putFile(key: string, localPath: string, sha256: string): Promise<boolean> {
    this.learn();
    const { size } = await fs.stat(localPath);
    if (size > this.budget) {
      await fs.rm(localPath, { force: true });
      return false;
    }
    await this.store.putFiles([{ key, localPath, sha256 }]);
    this.remember(key, size);
    await this.evict();
    return true;
  }

  private remember(key: string, size: number): void {
    this.forget(key);
    this.entries.set(key, size);
    this.total += size;
  }

  private forget(key: string): void {
    const size = this.entries.get(key);
    if (size === undefined) return;
    this.entries.delete(key);
    this.total -= size;
  }

  private evict(): Promise<void> {
    this.evicting = this.evicting.then(async () => {
      for (const [key] of this.entries) {
        if (this.total <= this.budget) return;
        this.forget(key);
        await this.store.delete(key).catch((err: unknown) => this.log.warn({ err, objectKey: key }, 'derived object could not be evicted'));
      }
    });
    return this.evicting;
  }

  /**
   * Once per process: what is already cached, as least recently used (its last use is not known), so that a
   * restart does not forget a full cache. Runs beside the requests; entries they touch meanwhile stay newer.
   */
  private learn(): void {
    this.learning ??= (async () => {
      const keys: string[] = [];
      for await (const key of this.store.list(DERIVED_PREFIX)) keys.push(key);
      const found = new Map<string, number>();
      for (let i = 0; i < keys.length; i += PARALLEL_HEADS) {
        await Promise.all(
          keys.slice(i, i + PARALLEL_HEADS).map(async (key) => {
            const head = await this.store.head(key);
            if (head) found.set(key, head.size);
          }),
        );
      }
      // Older than anything used since the start: ahead of those in the order of eviction.
      const used = new Map(this.entries);
      this.entries.clear();
      this.total = 0;
      for (const [key, size] of found) if (!used.has(key)) this.remember(key, size);
      for (const [key, size] of used) this.remember(key, size);
      await this.evict();
    })().catch((err: unknown) => this.log.warn({ err }, 'the derived cache could not be listed; it is bounded by what this process writes'));
  }
}
