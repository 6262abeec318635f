import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import type { StoredInstance } from '../../src/catalog/catalog.js';
import { cropped } from '../../src/render/crop.js';
import { Renderer, type InstanceReader } from '../../src/render/render.js';
import { RenderError, type DisplayImage } from '../../src/render/types.js';
import { DerivedCache } from '../../src/storage/derived-cache.js';
import { MemoryObjectStore } from '../../src/storage/memory.js';

/** The in-memory store, counting what is put into it. */
class MemoryStore extends MemoryObjectStore {
  puts = 0;
  override async put(key: string, body: Buffer): Promise<void> {
    this.puts++;
    await super.put(key, body);
  }
}

const ROWS = 16;
const COLUMNS = 24;
/** A 16-bit MONOCHROME2 gradient, native little endian. */
const FRAME = Buffer.from(new Uint16Array(Array.from({ length: ROWS * COLUMNS }, (_, i) => (i * 37) % 4096)).buffer);
const us = (v: number) => ({ vr: 'US', Value: [v] });
const instance: StoredInstance = {
  studyUid: '1.2.3',
  seriesUid: '1.2.3.4',
  sopUid: '1.2.3.4.5',
  sopClassUid: '1.2.840.10008.5.1.4.1.1.7',
  transferSyntaxUid: '1.2.840.10008.1.2.1',
  numberOfFrames: 1,
  objectKey: 'studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5.dcm',
  size: 0,
  sha256: 'ab'.repeat(32),
  inflated: false,
  frames: '[[[0,768]]]',
  bulkData: '{}',
  json: JSON.stringify({
    '00280002': us(1),
    '00280004': { vr: 'CS', Value: ['MONOCHROME2'] },
    '00280010': us(ROWS),
    '00280011': us(COLUMNS),
    '00280100': us(16),
    '00280101': us(12),
    '00280102': us(11),
    '00280103': us(0),
  }),
};

function counting() {
  const reads = { frames: 0 };
  const reader: InstanceReader = {
    async frame() {
      reads.frames++;
      await new Promise((r) => setTimeout(r, 20));
      return Buffer.from(FRAME);
    },
    async bulkData() {
      throw new Error('no bulk data here');
    },
  };
  return { reads, reader };
}

const silent = pino({ level: 'silent' });
/** The derived cache at its default budget, over `store`. */
const cacheIn = (store: MemoryObjectStore) => new DerivedCache(store, 1024 ** 3, silent);
const renderers: Renderer[] = [];
afterAll(async () => {
  await Promise.all(renderers.map((r) => r.close()));
});

describe('Renderer', () => {
  it('renders requests that arrive together once, caches the result, and serves the next from the cache', async () => {
    const store = new MemoryStore();
    const { reads, reader } = counting();
    const renderer = new Renderer(cacheIn(store), reader, silent);
    renderers.push(renderer);
    const options = { format: 'png' as const };
    const together = await Promise.all(Array.from({ length: 5 }, () => renderer.render(instance, 1, options)));
    expect(reads.frames).toBe(1);
    for (const r of together) expect(r.bytes.equals(together[0]!.bytes)).toBe(true);
    // Cached just after the answer.
    await new Promise((r) => setTimeout(r, 20));
    expect(store.puts).toBe(1);
    const key = renderer.identify(instance, 1, options).key;
    expect(key).toMatch(/^derived\/studies\/1\.2\.3\/series\/1\.2\.3\.4\/instances\/1\.2\.3\.4\.5\/abababababababab-f1-[0-9a-f]{16}\.png$/);
    const later = await renderer.render(instance, 1, options);
    expect(later.cached).toBe(true);
    expect(later.bytes.equals(together[0]!.bytes)).toBe(true);
    expect(reads.frames).toBe(1);
  });

  it('names equal requests alike and different ones apart, and a replaced instance apart', () => {
    const renderer = new Renderer(cacheIn(new MemoryStore()), counting().reader, silent);
    renderers.push(renderer);
    const id = (o: Parameters<Renderer['identify']>[2], i = instance, frame = 1) => renderer.identify(i, frame, o);
    expect(id({ format: 'jpeg' }).key).toBe(id({ format: 'jpeg', quality: 90 }).key);
    expect(id({ format: 'png', quality: 10 }).key).toBe(id({ format: 'png' }).key);
    const keys = new Set([
      id({ format: 'jpeg' }).key,
      id({ format: 'jpeg', quality: 50 }).key,
      id({ format: 'webp' }).key,
      id({ format: 'jpeg', viewport: { width: 10, height: 10 } }).key,
      id({ format: 'jpeg', window: { center: 1, width: 2, fn: 'LINEAR' } }).key,
      id({ format: 'jpeg', window: { center: 1, width: 2, fn: 'SIGMOID' } }).key,
      id({ format: 'jpeg' }, instance, 2).key,
      id({ format: 'jpeg' }, { ...instance, sha256: 'cd'.repeat(32) }).key,
    ]);
    expect(keys.size).toBe(8);
  });

  it('does not cache a failure, and tries again next time', async () => {
    const store = new MemoryStore();
    let calls = 0;
    const reader: InstanceReader = {
      async frame() {
        calls++;
        if (calls === 1) throw new RenderError(422, 'broken the first time');
        return Buffer.from(FRAME);
      },
      async bulkData() {
        throw new Error('none');
      },
    };
    const renderer = new Renderer(cacheIn(store), reader, silent);
    renderers.push(renderer);
    await expect(renderer.render(instance, 1, { format: 'jpeg' })).rejects.toThrow(/broken the first time/);
    expect(store.puts).toBe(0);
    const second = await renderer.render(instance, 1, { format: 'jpeg' });
    expect(second.cached).toBe(false);
    expect(calls).toBe(2);
  });
});

describe('cropped', () => {
  // 4×2 grey image: 0 1 2 3 / 4 5 6 7
  const image: DisplayImage = { data: Buffer.from([0, 1, 2, 3, 4, 5, 6, 7]), width: 4, height: 2, channels: 1 };

  it('cuts out the region, clipped to the image', () => {
    expect(cropped(image, { x: 1, y: 0, width: 2, height: 2 })).toEqual({ data: Buffer.from([1, 2, 5, 6]), width: 2, height: 2, channels: 1 });
    expect(cropped(image, { x: 2, y: 1, width: 100, height: 100 })).toEqual({ data: Buffer.from([6, 7]), width: 2, height: 1, channels: 1 });
  });

  it('flips along an axis whose extent is negative', () => {
    expect(cropped(image, { x: 0, y: 0, width: -4, height: 2 }).data).toEqual(Buffer.from([3, 2, 1, 0, 7, 6, 5, 4]));
    expect(cropped(image, { x: 1, y: 0, width: -2, height: 1 }).data).toEqual(Buffer.from([2, 1]));
    expect(cropped(image, { x: 0, y: 0, width: 4, height: -2 }).data).toEqual(Buffer.from([4, 5, 6, 7, 0, 1, 2, 3]));
  });

  it('refuses a region outside the image', () => {
    expect(() => cropped(image, { x: 10, y: 0, width: 2, height: 2 })).toThrow(/outside/);
  });
});
