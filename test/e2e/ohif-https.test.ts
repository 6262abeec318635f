import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { makeCertificate } from '../helpers/certificate.js';
import { AS_ADMIN, startServer, stow, type RunningServer } from '../helpers/server.js';
import { expectCleanConversation, fail, firstViewport, launchChromium, openPage, waitForImage } from './viewer-page.js';

/** OHIF served by PACS-lite over its own HTTPS (PACS_TLS_CERT), with a certificate the test makes. */
describe('OHIF over HTTPS', () => {
  let pacs: RunningServer;
  let browser: Browser;
  const study = newUid();
  const dir = path.join(os.tmpdir(), `pacs-e2e-https-${process.pid}`);

  beforeAll(async () => {
    await fs.mkdir(dir, { recursive: true });
    const { cert, key } = makeCertificate(dir);
    // Stored over plain HTTP first, then the same data folder served over HTTPS: Node's fetch would not trust the test's certificate.
    const plain = await startServer({ dataDir: path.join(dir, 'data') });
    const stored = await stow(plain.dicomweb, syntheticSeries(5, { studyUID: study, modality: 'CT', rows: 256, columns: 256, patientName: 'Secure^Sam', patientID: 'TLS-1' }));
    expect(stored.status, await stored.text()).toBe(200);
    await plain.stop();
    pacs = await startServer({ dataDir: path.join(dir, 'data'), env: { PACS_TLS_CERT: cert, PACS_TLS_KEY: key } });
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('opens a viewer link and draws the study, every DICOMweb call over HTTPS', async () => {
    // The test's certificate is not in Chromium's store: trusted for this context only.
    const v = await openPage(browser, pacs, dir, { ignoreHTTPSErrors: true });
    try {
      const answer = await v.page.request.get(`${pacs.url}/api/v1/studies/${study}/viewer-url`, { headers: AS_ADMIN });
      expect(answer.status(), await answer.text()).toBe(200);
      const link = ((await answer.json()) as { viewer_url: string }).viewer_url;
      expect(link.startsWith(`${pacs.url}/viewer?`)).toBe(true);
      const page = await v.page.goto(link);
      expect(page?.headers()['strict-transport-security']).toBe('max-age=31536000');
      await waitForImage(v, await firstViewport(v), 'study over HTTPS');
      await expectCleanConversation(v);
      const plain = v.journal.requests.filter((r) => !r.url.startsWith('https://'));
      if (plain.length || v.journal.requests.length === 0) await fail(v, `${plain.length} DICOMweb requests were not over HTTPS`);
    } finally {
      await v.page.context().close();
    }
  }, 90_000);
});
