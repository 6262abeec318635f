import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { objectKeys, readObject } from '../helpers/stored.js';

/**
 * The derived cache (rendered images, thumbnails) is held to PACS_DERIVED_CACHE_BYTES, least recently used out
 * first, and requests that differ by nothing the 8-bit image shows share one entry: anyone with a read token could
 * otherwise fill the disk with one rendering per `window=` value.
 */

const BUDGET = 12 * 1024;
const studyUID = newUid();
const seriesUID = newUid();
const sopInstanceUID = newUid();
const rendered = () => `/studies/${studyUID}/series/${seriesUID}/instances/${sopInstanceUID}/rendered`;

let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ env: { PACS_DERIVED_CACHE_BYTES: String(BUDGET) } });
  const response = await stow(server.dicomweb, [syntheticInstance({ studyUID, seriesUID, sopInstanceUID, rows: 96, columns: 96 })]);
  expect(response.status, await response.clone().text()).toBe(200);
});
afterAll(async () => {
  await server?.stop();
});

/** Keys and total bytes of the derived objects, once the writes that follow the answers have settled. */
async function settledDerived(): Promise<{ keys: string[]; bytes: number }> {
  let last = '';
  for (let i = 0; i < 100; i++) {
    const keys = (await objectKeys(server, 'derived/')).filter((k) => !k.endsWith('.tmp'));
    if (keys.join() === last) {
      const sizes = await Promise.all(keys.map((k) => readObject(server, k).then((b) => b.length, () => 0)));
      return { keys, bytes: sizes.reduce((a, b) => a + b, 0) };
    }
    last = keys.join();
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('the derived objects kept changing');
}

describe('derived cache', () => {
  it('keeps 300 renderings with distinct windows within PACS_DERIVED_CACHE_BYTES', async () => {
    let sent = 0;
    let answered = 0;
    for (let i = 0; i < 300; i++) {
      const response = await adminFetch(`${server.dicomweb}${rendered()}?window=${600 + i * 7},1200`, { headers: { Accept: 'image/png' } });
      const bytes = Buffer.from(await response.arrayBuffer());
      expect(response.status).toBe(200);
      sent += bytes.length;
      answered++;
    }
    expect(answered).toBe(300);
    // The renderings together are several times the budget, so an unbounded cache is caught.
    expect(sent).toBeGreaterThan(3 * BUDGET);
    const { keys, bytes } = await settledDerived();
    expect(bytes, `${keys.length} derived objects`).toBeLessThanOrEqual(BUDGET);
    expect(keys.length).toBeGreaterThan(0);
  });

  it('still answers a rendering whose entry was evicted, and caches it again', async () => {
    const url = `${server.dicomweb}${rendered()}?window=600,1200`;
    const response = await adminFetch(url, { headers: { Accept: 'image/png' } });
    expect(response.status).toBe(200);
    const again = await adminFetch(url, { headers: { Accept: 'image/png' } });
    expect(Buffer.from(await again.arrayBuffer())).toEqual(Buffer.from(await response.arrayBuffer()));
  });

  it('gives windows that differ by less than the 8-bit image shows one cache entry', async () => {
    const etags = new Set<string>();
    for (const window of ['40,400', '40.0001,400.0001', '39.9999,400', '+40.00,4e2']) {
      const response = await adminFetch(`${server.dicomweb}${rendered()}?window=${window}`);
      expect(response.status).toBe(200);
      await response.arrayBuffer();
      etags.add(response.headers.get('etag')!);
    }
    expect(etags.size).toBe(1);
    const other = await adminFetch(`${server.dicomweb}${rendered()}?window=41,400`);
    await other.arrayBuffer();
    expect(etags.has(other.headers.get('etag')!)).toBe(false);
  });
});
