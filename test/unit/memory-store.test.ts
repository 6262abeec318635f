import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { MemoryObjectStore } from '../../src/storage/memory.js';
import { ObjectNotFound, type ObjectStore } from '../../src/storage/object-store.js';

describe('MemoryObjectStore', () => {
  it('moves local files in, reads ranges back, lists by prefix and says what is missing', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'memory-store-'));
    try {
      const local = path.join(dir, 'spool');
      await fs.writeFile(local, 'abcdefghij');
      const store: ObjectStore = new MemoryObjectStore();
      await store.putFiles([{ key: 'studies/1/a.dcm', localPath: local, sha256: '' }]);
      await store.put('derived/x', Buffer.alloc(0), 'image/png');
      await expect(fs.access(local)).rejects.toThrow();
      expect((await buffer(await store.get('studies/1/a.dcm', { offset: 2, length: 3 }))).toString()).toBe('cde');
      expect((await buffer(await store.get('studies/1/a.dcm', { offset: 8, length: 5 }))).toString()).toBe('ij');
      expect((await buffer(await store.get('derived/x'))).length).toBe(0);
      expect((await store.head('studies/1/a.dcm'))?.size).toBe(10);
      const listed: string[] = [];
      for await (const key of store.list('studies/')) listed.push(key);
      expect(listed).toEqual(['studies/1/a.dcm']);
      await store.delete('studies/1/a.dcm');
      expect(await store.head('studies/1/a.dcm')).toBeUndefined();
      await expect(store.get('studies/1/a.dcm')).rejects.toBeInstanceOf(ObjectNotFound);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
