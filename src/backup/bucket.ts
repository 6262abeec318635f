import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { ObjectNotFound, type ObjectStore } from '../storage/object-store.js';
import { S3ObjectStore } from '../storage/s3.js';
import { copySqliteIndex } from './snapshot.js';

/** Where a bucket backup keeps the files of its local folder, beside its objects and never under `studies/`. */
const PREFIX = 'pacs-backup/';
/** What a restore needs besides the objects: the index, the manifest, the viewer signing key. */
const FILES = ['index.sqlite', 'backup.json', 'secrets/viewer-signing-keys.json'];

/**
 * Puts the files of a bucket backup's local folder into the bucket after a run, so that the bucket alone restores
 * when that folder is lost too: the open index as a snapshot of itself, each file checked by the bucket against its
 * SHA-256 (ObjectStore.putFiles).
 */
export async function sendLocalFiles(storageDir: string, store: ObjectStore, spoolDir: string): Promise<void> {
  for (const name of FILES) {
    const copy = path.join(spoolDir, `to-bucket-${path.basename(name)}`);
    if (name === 'index.sqlite') await copySqliteIndex(storageDir, copy);
    else if (!(await fs.copyFile(path.join(storageDir, name), copy).then(() => true, () => false))) continue;
    await store.putFiles([{ key: PREFIX + name, localPath: copy, sha256: await fileSha256(copy) }]);
  }
}

/**
 * Brings back from the bucket those files the backup's local folder lacks (its disk was lost, or this is another
 * machine), before the index there is opened. Resolves with the names fetched.
 */
export async function fetchLocalFiles(config: Config & { s3: NonNullable<Config['s3']> }, log: Logger, { create }: { create: boolean }): Promise<string[]> {
  const store = await S3ObjectStore.open(config.s3, log, { create });
  const fetched: string[] = [];
  try {
    for (const name of FILES) {
      const file = path.join(config.storageDir, name);
      if (await fs.stat(file).then(() => true, () => false)) continue;
      const body = await store.get(PREFIX + name).catch((e: unknown) => {
        if (e instanceof ObjectNotFound) return undefined;
        throw e;
      });
      if (!body) continue;
      await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await pipeline(body, createWriteStream(`${file}.tmp`, { mode: 0o600 }));
      await fs.rename(`${file}.tmp`, file);
      fetched.push(name);
    }
  } finally {
    store.close();
  }
  return fetched;
}

async function fileSha256(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
