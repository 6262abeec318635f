import { createHash } from 'node:crypto';
import type { IndexedObject } from '../catalog/catalog.js';
import { ObjectNotFound, type ObjectStore } from '../storage/object-store.js';
import type { Finding } from './damage.js';

/**
 * Reads an indexed object whole and compares it with its row: its existence, its size and its SHA-256. undefined
 * when it is whole; a store that is away throws (that is no finding about the object).
 */
export async function checkObject(store: ObjectStore, row: IndexedObject): Promise<Finding | undefined> {
  const finding = (damage: Finding['damage'], detail: string): Finding => ({ sopUid: row.sopUid, objectKey: row.objectKey, damage, detail });
  let body;
  try {
    body = await store.get(row.objectKey);
  } catch (e) {
    if (e instanceof ObjectNotFound) return finding('missing', 'its object is missing from the store');
    throw e;
  }
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of body as AsyncIterable<Uint8Array>) {
    hash.update(chunk);
    size += chunk.byteLength;
  }
  if (size !== row.size) return finding('changed', `its object holds ${size} bytes, not the ${row.size} recorded at ingest`);
  const sha256 = hash.digest('hex');
  if (sha256 !== row.sha256) return finding('changed', `its bytes no longer match the SHA-256 recorded at ingest (now ${sha256})`);
  return undefined;
}
