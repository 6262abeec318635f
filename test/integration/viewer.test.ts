import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer, type RunningServer } from '../helpers/server.js';

/** OHIF served by PACS-lite itself (src/viewer/ohif.ts), on the origin of /dicom-web. */
let server: RunningServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(() => server?.stop());

describe('the viewer served by PACS-lite', () => {
  it("points OHIF's data source at this server's own DICOMweb root", async () => {
    const response = await fetch(`${server.url}/app-config.js`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/javascript/);
    expect(response.headers.get('cache-control')).toBe('no-cache');
    const config = await response.text();
    expect(config).toContain(`const PACS_LITE = "${server.dicomweb}";`);
    expect(config).not.toContain('localhost:8080');
  });

  it("answers OHIF's pages with its index.html, and needs no credential for them", async () => {
    for (const page of ['/', '/viewer', '/viewer/dicomweb']) {
      const response = await fetch(`${server.url}${page}?StudyInstanceUIDs=1.2.3`);
      expect(response.status, page).toBe(200);
      expect(response.headers.get('content-type')).toMatch(/^text\/html/);
      expect(await response.text()).toContain('app-config.js');
    }
  });

  it('serves hashed bundles to be cached for good', async () => {
    const html = await (await fetch(`${server.url}/`)).text();
    const bundle = /src="\/(app\.bundle\.[0-9a-f]+\.js)"/.exec(html)?.[1];
    expect(bundle, 'index.html names its app bundle').toBeDefined();
    const response = await fetch(`${server.url}/${bundle}`);
    expect(response.status).toBe(200);
    expect(response.headers.get('cache-control')).toBe('public, max-age=31536000, immutable');
    await response.body?.cancel();
  });

  it('leaves every other path to the routes that own it', async () => {
    const dicomweb = await fetch(`${server.dicomweb}/studies`);
    expect(dicomweb.status).toBe(401);
    const unknown = await fetch(`${server.url}/no-such-file.js`);
    expect(unknown.status).toBe(404);
    expect((await unknown.json()).error).toBe('not-found');
  });
});
