import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, freePort, startServer, type RunningServer } from '../helpers/server.js';
import { serveEmrPage, type EmrPage } from './emr-page.js';
import { launchChromium } from './viewer-page.js';

/**
 * An EMR's web page on another origin sends a photo's DICOM file as a resumable upload with tus-js-client (the
 * server's own copy of it), in Debian's Chromium: from an origin listed in PACS_CORS_ORIGINS it is stored, from
 * another the browser is refused at the preflight and nothing is stored. Both origins are the same page server:
 * `localhost` is listed, `127.0.0.1` is not.
 */
describe('a resumable upload from a page of another origin', () => {
  let pacs: RunningServer;
  let emrPage: EmrPage;
  let emrPort: number;
  let browser: Browser;
  let uploadKey: string;

  beforeAll(async () => {
    emrPort = await freePort();
    pacs = await startServer({ env: { PACS_CORS_ORIGINS: `http://localhost:${emrPort}` } });
    const made = await adminFetch(`${pacs.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'EMR uploads', role: 'upload' }) });
    uploadKey = ((await made.json()) as { key: string }).key;
    // The page uploads the file it is given in its URL's fragment, and says how it ended in its title.
    const html = `<!doctype html><script src="${pacs.url}/assets/tus.min.js"></script><script>
      const bytes = Uint8Array.from(atob(location.hash.slice(1)), (c) => c.charCodeAt(0));
      new tus.Upload(new Blob([bytes]), {
        endpoint: ${JSON.stringify(`${pacs.url}/api/v1/resumable`)},
        headers: { Authorization: ${JSON.stringify(`Bearer ${uploadKey}`)} },
        metadata: { filename: 'IM0001' },
        chunkSize: 16384,
        retryDelays: null,
        onSuccess: (payload) => { document.title = 'stored ' + payload.lastResponse.getBody(); },
        onError: (error) => { document.title = 'failed ' + error.message; },
      }).start();
    </script>`;
    emrPage = await serveEmrPage(html, emrPort);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await emrPage?.close();
    await pacs?.stop();
  });

  /** Opens the page on `host` with a new instance of ~50 KB (several chunks); how the upload ended, and the instance's UID. */
  async function uploadFrom(host: string): Promise<{ title: string; sopUid: string }> {
    const sopUid = newUid();
    const bytes = syntheticInstance({ sopInstanceUID: sopUid, rows: 160, columns: 160 });
    const page = await browser.newPage();
    try {
      await page.goto(`http://${host}:${emrPort}/#${bytes.toString('base64')}`);
      await page.waitForFunction(() => /^(stored|failed) /.test(document.title), undefined, { timeout: 30_000 });
      return { title: await page.title(), sopUid };
    } finally {
      await page.close();
    }
  }

  const found = async (sopUid: string) => ((await (await adminFetch(`${pacs.dicomweb}/instances?SOPInstanceUID=${sopUid}`)).json()) as unknown[]).length;

  it('is stored from a listed origin, chunk by chunk', async () => {
    const { title, sopUid } = await uploadFrom('localhost');
    expect(title).toMatch(/^stored /);
    expect(JSON.parse(title.slice('stored '.length))).toMatchObject({ status: 'stored', sop_instance_uid: sopUid });
    expect(await found(sopUid)).toBe(1);
  });

  it('is refused to an origin that is not listed, and nothing is stored', async () => {
    const { title, sopUid } = await uploadFrom('127.0.0.1');
    expect(title).toMatch(/^failed /);
    expect(await found(sopUid)).toBe(0);
    // No answer of the tus routes lets any origin read it, whatever the request.
    const created = await fetch(`${pacs.url}/api/v1/resumable`, { method: 'POST', headers: { Origin: 'https://elsewhere.example', Authorization: `Bearer ${uploadKey}`, 'Tus-Resumable': '1.0.0', 'Upload-Length': '10' } });
    expect(created.status).toBe(201);
    expect(created.headers.get('access-control-allow-origin')).toBeNull();
  });
});
