import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip } from 'node:zlib';
import type { Catalog, Scope } from '../catalog/catalog.js';
import { NotFound } from '../errors.js';

/** Assembled documents kept gzipped in memory: the series last asked for, which a viewer asks for again. */
const CACHED_DOCUMENTS = 64;
/** On the thread pool: a study's document of a few MB took tens of milliseconds of the event loop to compress. */
const gzipped = promisify(gzip);

/** A study's, series' or instance's metadata, named by its ETag before it is assembled. */
export type MetadataDocument = {
  etag: string;
  /** The DICOM JSON array as text. */
  json(): Promise<string>;
  /** Each instance's DICOM JSON as text, in the array's order. */
  instances(): Promise<string[]>;
  /** The same gzipped, from memory when it was assembled before. */
  gzipped(): Promise<Buffer>;
};

/**
 * WADO-RS metadata assembled from the DICOM JSON stored at ingest, never from the files (DESIGN decision 3). The ETag
 * is made of the instances' checksums and the root of the BulkDataURIs, so it costs one small index read, and a
 * document gzipped once is served from memory until an instance in it changes.
 */
export class MetadataDocuments {
  /** Gzipped documents by ETag; a document being compressed is shared by everyone who asks for it meanwhile. */
  private readonly cache = new Map<string, Promise<Buffer>>();

  constructor(private readonly catalog: Catalog) {}

  /** Throws NotFound when nothing is stored in scope. `bulkDataRoot` begins every BulkDataURI (the DICOMweb root). */
  async of(scope: Scope, bulkDataRoot: string): Promise<MetadataDocument> {
    const checksums = await this.catalog.checksums(scope);
    if (checksums.length === 0) throw new NotFound(`no ${levelOf(scope)} with that UID is stored`);
    const etag = `"${createHash('sha1').update(bulkDataRoot).update(checksums.join()).digest('base64url')}"`;
    const instances = async () => (await this.catalog.storedInstances(scope)).map((i) => absolutizeBulkData(i.json, bulkDataRoot));
    const json = async () => `[${(await instances()).join(',')}]`;
    return {
      etag,
      json,
      instances,
      gzipped: () => {
        const cached = this.cache.get(etag);
        if (cached) return cached;
        const zipping = json().then((text) => gzipped(text, { level: 6 }));
        this.remember(etag, zipping);
        // A failure is its caller's to report, and is not kept for the next one.
        zipping.catch(() => this.cache.get(etag) === zipping && this.cache.delete(etag));
        return zipping;
      },
    };
  }

  private remember(etag: string, zipped: Promise<Buffer>): void {
    this.cache.set(etag, zipped);
    if (this.cache.size > CACHED_DOCUMENTS) this.cache.delete(this.cache.keys().next().value!);
  }
}

/** Stored JSON keeps BulkDataURIs relative to the root so that one copy serves every public URL. */
export function absolutizeBulkData(json: string, root: string): string {
  return json.replaceAll('"BulkDataURI":"', `"BulkDataURI":"${root}/`);
}

/** The level a scope names, as a person says it. */
export function levelOf(scope: Scope): 'study' | 'series' | 'instance' {
  return scope.sopUid ? 'instance' : scope.seriesUid ? 'series' : 'study';
}
