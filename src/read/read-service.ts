import { buffer } from 'node:stream/consumers';
import type { Logger } from 'pino';
import type { Catalog, Scope, StoredInstance } from '../catalog/catalog.js';
import { NotFound } from '../errors.js';
import type { DerivedCache } from '../storage/derived-cache.js';
import type { ObjectStore } from '../storage/object-store.js';
import { attributesBeforePixelData, readBulkData, type BulkData, type RangeOf } from './bulk-data.js';
import { CheckedInstances, READ_WHOLE_BYTES } from './checked-instances.js';
import type { DataSetSource, ReadLimits } from './data-set-ranges.js';
import { InflatedCopies } from './inflated-copies.js';
import { readFrame, readFrames, type FrameBytes } from './frames.js';
import { levelOf, MetadataDocuments, type MetadataDocument } from './metadata.js';
import { readAhead, ReadAheadBudget, type WithBody } from './read-ahead.js';

/** Files up to READ_WHOLE_BYTES a retrieve or a download reads ahead of the one it sends: at most 16 MiB a response. */
const FILES_AHEAD = 8;
/** What all of them hold ahead together: four responses' worth, then each reads its files as it reaches them. */
const READ_AHEAD_BYTES = 64 * 1024 * 1024;

/**
 * Everything read of stored instances (DESIGN decision 13), below HTTP: whole instances checked against their
 * SHA-256, frames and bulk data as byte ranges, and assembled metadata. WADO-RS, WADO-URI and rendering read
 * through it alike; a route only parses, negotiates and maps errors.
 */
export class ReadService {
  private readonly checked: CheckedInstances;
  private readonly metadataDocuments: MetadataDocuments;
  private readonly source: DataSetSource;
  /** Shared by every retrieve and download of this server. */
  private readonly aheadBudget = new ReadAheadBudget(READ_AHEAD_BYTES);

  constructor(
    store: ObjectStore,
    private readonly catalog: Catalog,
    private readonly log: Logger,
    limits: ReadLimits,
    /** Where deflated instances' inflated copies are kept (with renderings), and a folder to make them in. */
    derived: { cache: DerivedCache; tmpDir: string },
  ) {
    this.source = { store, limits, copies: new InflatedCopies(store, derived.cache, derived.tmpDir, limits, log) };
    this.checked = new CheckedInstances(store, catalog, log);
    this.metadataDocuments = new MetadataDocuments(catalog);
  }

  /**
   * Files to send one after another (a multipart retrieve, a ZIP), with the next FILES_AHEAD small ones read and
   * checked ahead of the one being sent, within what all responses may hold ahead together (read-ahead.ts).
   */
  ahead<T extends WithBody>(items: readonly T[]): AsyncGenerator<T> {
    return readAhead(items, FILES_AHEAD, READ_WHOLE_BYTES, this.aheadBudget);
  }

  /** The instances in scope, in the index's order; NotFound when there are none. */
  async instances(scope: Scope): Promise<StoredInstance[]> {
    const found = await this.catalog.storedInstances(scope);
    if (found.length === 0) throw new NotFound(`no ${levelOf(scope)} with that UID is stored`);
    return found;
  }

  /** The instance a scope with a SOP Instance UID names; NotFound, saying `missing`, when it is not stored. */
  async instance(scope: Scope, missing = 'no instance with that UID is stored'): Promise<StoredInstance> {
    const [found] = await this.catalog.storedInstances(scope);
    if (!found) throw new NotFound(missing);
    return found;
  }

  /** The image that stands for a study or a series (Catalog.representativeImage); NotFound says why there is none. */
  async representativeImage(scope: Omit<Scope, 'sopUid'>): Promise<StoredInstance> {
    const image = await this.catalog.representativeImage(scope);
    if (image) return image;
    const level = levelOf(scope);
    const stored = (await this.catalog.checksums(scope)).length > 0;
    throw new NotFound(stored ? `the ${level} holds no image (no instance has Rows and Columns), so there is nothing to render` : `no ${level} with that UID is stored`);
  }

  /** Throws ObjectsDamaged, naming each one, when any object is missing or has another size than recorded. */
  assertPresent(instances: StoredInstance[]): Promise<void> {
    return this.checked.assertPresent(instances);
  }

  /** The stored file byte for byte, its SHA-256 checked as it streams (CheckedInstances.stream). */
  instanceStream(instance: StoredInstance): AsyncGenerator<Uint8Array> {
    return this.checked.stream(instance);
  }

  /** Frames (1-based, already checked against the instance) as Explicit VR Little Endian or as stored when compressed. */
  frames(instance: StoredInstance, numbers: number[]): AsyncGenerator<FrameBytes> {
    return readFrames(this.source, instance, numbers);
  }

  /** One frame in a buffer of the caller's own (rendering may hand it over to a codec worker). */
  frame(instance: StoredInstance, n: number): Promise<Buffer> {
    return readFrame(this.source, instance, n);
  }

  /** Bulk data by its path after `/bulkdata/`, streamed: all of it, or a range within it. */
  bulkDataStream(instance: StoredInstance, path: string, rangeOf?: RangeOf): Promise<BulkData> {
    return readBulkData(this.source, instance, path, (ranges) =>
      // Kept for the next read; a read that cannot keep them still answers.
      this.catalog.recordBulkData(instance.sopUid, instance.sha256, ranges).catch((err: unknown) => this.log.warn({ err, sopUid: instance.sopUid }, 'bulk data ranges found at a read could not be recorded')),
    rangeOf);
  }

  /** Bulk data by its path after `/bulkdata/`, in one buffer (rendering's LUTs and overlays). */
  async bulkData(instance: StoredInstance, path: string): Promise<Buffer> {
    return buffer((await this.bulkDataStream(instance, path)).chunks);
  }

  /**
   * The stored file up to its pixel data's first frame (the whole file when it has none), its data set inflated when
   * it is deflated: what a conversion parses (HttpError 413 past 64 MB).
   */
  attributes(instance: StoredInstance): Promise<Buffer> {
    return attributesBeforePixelData(this.source, instance);
  }

  /** Metadata of the instances in scope, with its ETag; BulkDataURIs begin with `bulkDataRoot`. */
  metadata(scope: Scope, bulkDataRoot: string): Promise<MetadataDocument> {
    return this.metadataDocuments.of(scope, bulkDataRoot);
  }
}
