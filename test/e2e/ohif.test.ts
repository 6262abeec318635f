import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { freePort, startServer, stow, type RunningServer } from '../helpers/server.js';
import { serveOhif, type OhifServer } from '../../viewer/serve-ohif.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const haveChromium = existsSync(CHROMIUM);
// On CI a missing browser means the suite proved nothing, so it must fail there rather than skip.
const runs = haveChromium || process.env.CI === 'true';
if (!runs) console.warn(`OHIF end-to-end tests skipped: no Chromium at ${CHROMIUM} (apt-get install chromium)`);

const CT_PATIENT = { dicom: 'Tomography^Alice', shown: 'Tomography, Alice' };
const US_PATIENT = { dicom: 'Sonography^Bob', shown: 'Sonography, Bob' };

/** What the browser did on the PACS origin and what went wrong anywhere, for failure messages. */
type Journal = {
  requests: Array<{ method: string; url: string; accept: string; status?: number }>;
  problems: string[];
};

describe.runIf(runs)('OHIF v3 against PACS-lite in Chromium', () => {
  let pacs: RunningServer;
  let ohif: OhifServer;
  let browser: Browser;
  const ctStudy = newUid();
  const usStudy = newUid();
  const artifacts = path.join(os.tmpdir(), `pacs-e2e-${process.pid}`);

  beforeAll(async () => {
    if (!haveChromium) throw new Error(`CI=true but there is no Chromium at ${CHROMIUM}; install Debian's chromium package`);
    await fs.mkdir(artifacts, { recursive: true });
    // Allow exactly the viewer's origin, as a clinic would, rather than the default `*`.
    const viewerPort = await freePort();
    pacs = await startServer({ env: { PACS_CORS_ORIGINS: `http://127.0.0.1:${viewerPort}` } });
    const ct = syntheticSeries(20, { studyUID: ctStudy, modality: 'CT', rows: 256, columns: 256, patientName: CT_PATIENT.dicom, patientID: 'E2E-CT', studyDescription: 'CT phantom' });
    const us = syntheticInstance({ studyUID: usStudy, modality: 'US', frames: 40, rows: 256, columns: 256, patientName: US_PATIENT.dicom, patientID: 'E2E-US', studyDescription: 'US cine' });
    for (const files of [ct, [us]]) {
      const response = await stow(pacs.dicomweb, files);
      expect(response.status, await response.text()).toBe(200);
    }
    ohif = await serveOhif({ dicomwebRoot: pacs.dicomweb, port: viewerPort });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await ohif?.stop();
    await pacs?.stop();
  });

  it('lists the stored studies by patient name and filters them by part of a name', async () => {
    const { page, journal } = await openPage(browser, pacs);
    try {
      await page.goto(`${ohif.url}/`);
      for (const name of [CT_PATIENT.shown, US_PATIENT.shown]) {
        await page
          .getByText(name, { exact: true })
          .first()
          .waitFor({ timeout: 45_000 })
          .catch(async () => fail(`study list never showed ${name}`, page, journal));
      }
      // OHIF sends PatientName=*sOnO* (wildcards, as supportsWildcard promises); matching is case-insensitive.
      await page.goto(`${ohif.url}/?patientName=sOnO`);
      await page
        .getByText(US_PATIENT.shown, { exact: true })
        .first()
        .waitFor({ timeout: 30_000 })
        .catch(async () => fail(`filtered study list never showed ${US_PATIENT.shown}`, page, journal));
      if (await page.getByText(CT_PATIENT.shown, { exact: true }).count()) await fail(`filter "sOnO" still lists ${CT_PATIENT.shown}`, page, journal);
      await expectCleanConversation(page, journal);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  it('draws the CT slice with its full grey range and the bright disc', async () => {
    const { page, journal } = await openPage(browser, pacs);
    try {
      await page.goto(`${ohif.url}/viewer?StudyInstanceUIDs=${ctStudy}`);
      const viewport = await firstViewport(page, journal);
      const image = await waitForImage(viewport, page, journal, 'ct');
      // Window 40/400 after rescale -1024 clips an eighth of the background to black; a viewer that
      // missed the VOI or rescale attributes in the metadata would show no black at all.
      if (image.blackFraction < 0.05) await fail(`ct: drawn without its window (${summary(image)})`, page, journal, image);
      await expectCleanConversation(page, journal);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  it('scrolls through the frames of the multi-frame ultrasound', async () => {
    const { page, journal } = await openPage(browser, pacs);
    try {
      await page.goto(`${ohif.url}/viewer?StudyInstanceUIDs=${usStudy}`);
      const viewport = await firstViewport(page, journal);
      const first = await waitForImage(viewport, page, journal, 'us-frame-1');
      // If cine played by itself, a change after scrolling would prove nothing.
      await page.waitForTimeout(1_000);
      const still = await picture(viewport);
      if (changedFraction(first, still) > 0.001) await fail('the ultrasound changes without any scrolling (cine playing?)', page, journal, still);

      const box = (await viewport.boundingBox())!;
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.wheel(0, 120);
      const afterWheel = await waitForChange(viewport, first, page, journal, 'us-after-wheel');

      await page.keyboard.press('ArrowDown');
      await waitForChange(viewport, afterWheel, page, journal, 'us-after-arrow-down');
      await expectCleanConversation(page, journal);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  async function openPage(browser: Browser, pacs: RunningServer): Promise<{ page: Page; journal: Journal }> {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    // The onboarding tour and the investigational-use banner sit on top of the viewport; a returning
    // user has dismissed both, which is what these keys record.
    await context.addInitScript(() => {
      localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
      localStorage.setItem('investigationalUseDialog', JSON.stringify({ expiryDate: '2999-01-01T00:00:00Z' }));
      sessionStorage.setItem('investigationalUseDialog', 'hidden');
    });
    const page = await context.newPage();
    const journal: Journal = { requests: [], problems: [] };
    const fromPacs = (url: string) => url.startsWith(`${pacs.url}/`);
    page.on('console', (message) => {
      if (message.type() === 'error') journal.problems.push(`console error: ${message.text()}`);
    });
    page.on('pageerror', (error) => journal.problems.push(`page error: ${error.message}`));
    page.on('request', (request) => {
      if (fromPacs(request.url())) journal.requests.push({ method: request.method(), url: request.url(), accept: request.headers()['accept'] ?? '' });
    });
    page.on('response', (response) => {
      if (!fromPacs(response.url())) return;
      const entry = journal.requests.findLast((r) => r.url === response.url() && r.status === undefined);
      if (entry) entry.status = response.status();
      if (response.status() >= 400) {
        journal.problems.push(`${response.status()} from ${response.request().method()} ${response.url()} (Accept: ${response.request().headers()['accept']})`);
      }
    });
    page.on('requestfailed', (request) => {
      const what = fromPacs(request.url()) ? 'DICOMweb request failed' : 'request failed';
      journal.problems.push(`${what}: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
    });
    return { page, journal };
  }

  /** OHIF talked to PACS-lite without an error status or a failed request (CORS refusals show up as failures). */
  async function expectCleanConversation(page: Page, journal: Journal): Promise<void> {
    // An abort is OHIF cancelling its own prefetch, not an answer from the server.
    const pacsErrors = journal.problems.filter((p) => (p.startsWith('DICOMweb request failed') && !p.endsWith('net::ERR_ABORTED')) || /^\d{3} from /.test(p));
    if (pacsErrors.length) await fail(`the viewer met ${pacsErrors.length} failed or refused DICOMweb requests`, page, journal);
  }

  async function firstViewport(page: Page, journal: Journal): Promise<Locator> {
    const viewport = page.locator('.cornerstone-viewport-element').first();
    await viewport.waitFor({ state: 'visible', timeout: 40_000 }).catch(() => fail('no viewport appeared', page, journal));
    return viewport;
  }

  /** Polls the viewport until it shows a windowed image: many grey levels and a wide white area (the disc). */
  async function waitForImage(viewport: Locator, page: Page, journal: Journal, label: string): Promise<Picture> {
    let last: Picture | undefined;
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await page.waitForTimeout(500)) {
      last = await picture(viewport);
      if (last.greyLevels >= 48 && last.longestWhiteRun >= 0.15 * last.side) return last;
    }
    return fail(`${label}: no image drawn (${summary(last)})`, page, journal, last);
  }

  async function waitForChange(viewport: Locator, before: Picture, page: Page, journal: Journal, label: string): Promise<Picture> {
    let last: Picture | undefined;
    for (const deadline = Date.now() + 15_000; Date.now() < deadline; await page.waitForTimeout(250)) {
      last = await picture(viewport);
      if (last.greyLevels >= 48 && changedFraction(before, last) > 0.01) return last;
    }
    return fail(`${label}: the image did not change (${last ? `${(changedFraction(before, last) * 100).toFixed(2)} % of pixels differ` : 'no capture'})`, page, journal, last);
  }

  async function fail(message: string, page: Page, journal: Journal, shot?: Picture): Promise<never> {
    const file = path.join(artifacts, `${message.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
    if (shot) await fs.writeFile(file, shot.png);
    else await page.screenshot({ path: file }).catch(() => {});
    const requests = journal.requests.map((r) => `  ${r.status ?? '---'} ${r.method} ${r.url}  [Accept: ${r.accept}]`);
    throw new Error(
      [
        message,
        `page: ${page.url()}  screenshot: ${file}`,
        'problems:',
        ...(journal.problems.length ? journal.problems.map((p) => `  ${p}`) : ['  (none)']),
        'DICOMweb requests:',
        ...(requests.length ? requests : ['  (none)']),
        'server log (tail):',
        ...pacs.logs.slice(-20).map((l) => `  ${l}`),
      ].join('\n'),
    );
  }
});

/** A screenshot of the middle of a viewport: the corners and edges hold text overlays and markers. */
type Picture = {
  png: Buffer;
  grey: Uint8Array;
  width: number;
  height: number;
  side: number;
  greyLevels: number;
  longestWhiteRun: number;
  blackFraction: number;
};

async function picture(viewport: Locator): Promise<Picture> {
  const png = await viewport.screenshot({ animations: 'disabled', caret: 'hide' });
  const { width: fullWidth, height: fullHeight } = await sharp(png).metadata();
  const left = Math.round(fullWidth! * 0.2);
  const top = Math.round(fullHeight! * 0.2);
  const width = Math.round(fullWidth! * 0.6);
  const height = Math.round(fullHeight! * 0.6);
  const grey = new Uint8Array(await sharp(png).extract({ left, top, width, height }).greyscale().raw().toBuffer());
  const levels = new Set(grey);
  let longestWhiteRun = 0;
  let black = 0;
  for (let y = 0; y < height; y++) {
    let run = 0;
    for (let x = 0; x < width; x++) {
      const value = grey[y * width + x]!;
      run = value >= 245 ? run + 1 : 0;
      if (value <= 10) black++;
      if (run > longestWhiteRun) longestWhiteRun = run;
    }
  }
  // The image is fitted to the viewport's shorter side; the disc is at least 30 % of it across.
  return { png, grey, width, height, side: Math.min(fullWidth!, fullHeight!), greyLevels: levels.size, longestWhiteRun, blackFraction: black / grey.length };
}

function changedFraction(a: Picture, b: Picture): number {
  if (a.width !== b.width || a.height !== b.height) return 1;
  let changed = 0;
  for (let i = 0; i < a.grey.length; i++) if (Math.abs(a.grey[i]! - b.grey[i]!) > 8) changed++;
  return changed / a.grey.length;
}

function summary(p: Picture | undefined): string {
  return p
    ? `${p.greyLevels} grey levels, longest white run ${p.longestWhiteRun} px of ${p.side}, ${(p.blackFraction * 100).toFixed(1)} % black`
    : 'no capture';
}
