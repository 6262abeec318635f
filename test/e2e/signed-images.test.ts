import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { serveEmrPage, type EmrPage } from './emr-page.js';
import { launchChromium } from './viewer-page.js';

/**
 * A signed thumbnail link in an `<img>` tag of an EMR page on another origin (issue 16), in Debian's Chromium: the
 * link loads with no header and no CORS, and a link edited into another image does not.
 */
describe('signed image links in a browser', () => {
  let pacs: RunningServer;
  let emrPage: EmrPage;
  let browser: Browser;
  const study = newUid();
  let thumbnails: string[];

  beforeAll(async () => {
    pacs = await startServer();
    expect((await stow(pacs.dicomweb, syntheticSeries(2, { studyUID: study, rows: 128, columns: 128 }))).status).toBe(200);
    const made = await adminFetch(`${pacs.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'EMR', role: 'viewer-links' }) });
    const { key } = (await made.json()) as { key: string };
    const listed = await (await fetch(`${pacs.url}/api/v1/studies/${study}/images`, { headers: { Authorization: `Bearer ${key}` } })).json();
    thumbnails = listed.series[0].images.map((i: { links: { thumbnail: string } }) => i.links.thumbnail);
    const [good, other] = thumbnails as [string, string];
    // The EMR's page: one link as given, one edited to name the other image.
    const otherSop = new URL(other).pathname.split('/')[4]!;
    const tampered = good.replace(new URL(good).pathname.split('/')[4]!, otherSop);
    const html = `<!doctype html><img id="good" src="${good}"><img id="tampered" src="${tampered}">`;
    emrPage = await serveEmrPage(html);
    browser = await launchChromium();
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await emrPage?.close();
    await pacs?.stop();
  });

  it('loads the signed thumbnail and not the tampered one', async () => {
    const page = await browser.newPage();
    // Another origin than the server's: localhost, not 127.0.0.1.
    await page.goto(`http://localhost:${emrPage.port}/`);
    await page.waitForFunction(() => Array.from(document.images).every((img) => img.complete));
    const size = (id: string) => page.$eval(`#${id}`, (img) => (img as HTMLImageElement).naturalWidth);
    expect(await size('good')).toBeGreaterThan(0);
    expect(await size('tampered')).toBe(0);
    await page.close();
  });
});
