import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FileObjectStore } from '../../src/storage/fs.js';
import { MemoryObjectStore } from '../../src/storage/memory.js';
import { ObjectNotFound, type ObjectStore } from '../../src/storage/object-store.js';
import { S3ObjectStore } from '../../src/storage/s3.js';
import { S3RVER_CREDENTIALS, startS3, type RunningS3 } from '../helpers/s3.js';

const MiB = 1024 * 1024;
const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');

let s3: RunningS3;
let folder: string;
beforeAll(async () => {
  s3 = await startS3();
  folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-stores-'));
});
afterAll(async () => {
  await s3?.stop();
  await fs.rm(folder, { recursive: true, force: true });
});

// One contract, every store: what one of them does, the others must do too.
const stores: Array<[string, () => Promise<ObjectStore>]> = [
  ['filesystem', () => new FileObjectStore(path.join(folder, 'fs')).init()],
  [
    'S3 over HTTP',
    () =>
      S3ObjectStore.open({
        endpoint: s3.endpoint,
        bucket: 'contract',
        region: 'us-east-1',
        forcePathStyle: true,
        prefix: 'clinic/',
        multipartBytes: 5 * MiB,
        credentials: { accessKeyId: S3RVER_CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: S3RVER_CREDENTIALS.AWS_SECRET_ACCESS_KEY },
      }),
  ],
  ['memory', async () => new MemoryObjectStore()],
];

describe.each(stores)('the %s store', (name, open) => {
  let store: ObjectStore;
  beforeAll(async () => {
    store = await open();
  });

  async function spool(bytes: Buffer): Promise<{ localPath: string; sha256: string }> {
    const localPath = path.join(folder, `spool-${randomBytes(6).toString('hex')}`);
    await fs.writeFile(localPath, bytes);
    return { localPath, sha256: sha256(bytes) };
  }

  async function listed(prefix: string): Promise<string[]> {
    const keys: string[] = [];
    for await (const key of store.list(prefix)) keys.push(key);
    return keys.sort();
  }

  it('is usable', async () => {
    await expect(store.check()).resolves.toBeUndefined();
  });

  it('moves local files in and reads them back whole and by range', async () => {
    const a = Buffer.from('0123456789');
    const b = randomBytes(1000);
    const [fa, fb] = [await spool(a), await spool(b)];
    await store.putFiles([
      { key: 'studies/1/series/2/instances/3.dcm', ...fa },
      { key: 'studies/1/series/2/instances/4.dcm', ...fb },
    ]);
    await expect(fs.access(fa.localPath)).rejects.toThrow();
    expect(await buffer(await store.get('studies/1/series/2/instances/3.dcm'))).toEqual(a);
    expect(await buffer(await store.get('studies/1/series/2/instances/4.dcm'))).toEqual(b);
    expect((await buffer(await store.get('studies/1/series/2/instances/3.dcm', { offset: 3, length: 4 }))).toString()).toBe('3456');
    expect((await buffer(await store.get('studies/1/series/2/instances/4.dcm', { offset: 990, length: 10 }))).equals(b.subarray(990))).toBe(true);
    expect((await buffer(await store.get('studies/1/series/2/instances/4.dcm', { offset: 995, length: 10 }))).equals(b.subarray(995))).toBe(true);
    expect((await buffer(await store.get('studies/1/series/2/instances/4.dcm', { offset: 500, length: 0 }))).length).toBe(0);
  });

  it('tells the size and when an object was written', async () => {
    const before = Date.now() - 5000;
    await store.put('derived/head/x.png', Buffer.from('png bytes'), 'image/png');
    const head = await store.head('derived/head/x.png');
    expect(head?.size).toBe(9);
    if (head?.modifiedAt !== undefined) expect(head.modifiedAt).toBeGreaterThan(before);
    expect(await store.head('derived/head/absent.png')).toBeUndefined();
  });

  it('keeps an empty object', async () => {
    await store.put('derived/empty/e', Buffer.alloc(0), 'application/octet-stream');
    expect((await store.head('derived/empty/e'))?.size).toBe(0);
    expect((await buffer(await store.get('derived/empty/e'))).length).toBe(0);
  });

  it('replaces an object put again under its key', async () => {
    await store.put('derived/again/k', Buffer.from('first'), 'text/plain');
    await store.put('derived/again/k', Buffer.from('second'), 'text/plain');
    expect((await buffer(await store.get('derived/again/k'))).toString()).toBe('second');
  });

  it('says ObjectNotFound for a missing object, whole or by range', async () => {
    await expect(store.get('studies/9/missing.dcm')).rejects.toBeInstanceOf(ObjectNotFound);
    await expect(store.get('studies/9/missing.dcm', { offset: 0, length: 1 })).rejects.toBeInstanceOf(ObjectNotFound);
  });

  it('lists the keys under a prefix and nothing beside it', async () => {
    await store.put('list/a/1', Buffer.from('1'), 'text/plain');
    await store.put('list/a/deep/2', Buffer.from('2'), 'text/plain');
    await store.put('list/ab/3', Buffer.from('3'), 'text/plain');
    expect(await listed('list/a/')).toEqual(['list/a/1', 'list/a/deep/2']);
    expect(await listed('list/none/')).toEqual([]);
  });

  it('deletes an object, and deleting a missing one is no error', async () => {
    await store.put('derived/del/d', Buffer.from('d'), 'text/plain');
    await store.delete('derived/del/d');
    expect(await store.head('derived/del/d')).toBeUndefined();
    await expect(store.get('derived/del/d')).rejects.toBeInstanceOf(ObjectNotFound);
    await expect(store.delete('derived/del/d')).resolves.toBeUndefined();
  });

  it('streams a large object back byte for byte', async () => {
    const big = randomBytes(7 * MiB + 17);
    await store.putFiles([{ key: 'studies/big/series/1/instances/1.dcm', ...(await spool(big)) }]);
    let chunks = 0;
    const hash = createHash('sha256');
    for await (const chunk of await store.get('studies/big/series/1/instances/1.dcm')) {
      hash.update(chunk as Buffer);
      chunks++;
    }
    expect(hash.digest('hex')).toBe(sha256(big));
    expect((await store.head('studies/big/series/1/instances/1.dcm'))?.size).toBe(big.length);
    if (name !== 'memory') expect(chunks).toBeGreaterThan(1);
  });
});
