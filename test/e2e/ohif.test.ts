import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { photoWithoutModality } from '../fixtures/img2dcm-photo.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { startServer, stow, type RunningServer } from '../helpers/server.js';
import { changedFraction, expectCleanConversation, fail, firstViewport, launchChromium, openPage, picture, summary, waitForChange, waitForImage } from './viewer-page.js';

const CT_PATIENT = { dicom: 'Tomography^Alice', shown: 'Tomography, Alice' };
const US_PATIENT = { dicom: 'Sonography^Bob', shown: 'Sonography, Bob' };
/** A photo turned into DICOM by dcmtk's img2dcm: no Modality anywhere, so the study has no ModalitiesInStudy. */
const PHOTO_PATIENT = { dicom: 'Photo^Pia', shown: 'Photo, Pia' };
const BARE_PHOTO = 'Photo without patient';

/**
 * The staff workstation on a trusted LAN. OHIF 3.13 cannot be given an API key: its DICOMweb data source
 * takes the Authorization header from the user-authentication service only (OIDC or a `?token=` link)
 * and ignores `requestOptions.auth` (viewer/README.md, "Credentials"). So the server runs in the
 * trusted-LAN mode, anonymous reads, as such a clinic would run it.
 */
describe('OHIF v3 against PACS-lite in Chromium, on a LAN that allows anonymous reads', () => {
  let pacs: RunningServer;
  let browser: Browser;
  const ctStudy = newUid();
  const usStudy = newUid();
  const artifacts = path.join(os.tmpdir(), `pacs-e2e-${process.pid}`);

  beforeAll(async () => {
    await fs.mkdir(artifacts, { recursive: true });
    // OHIF is served by PACS-lite itself: its calls are same-origin, so no origin needs listing (CORS stays shut).
    pacs = await startServer({ env: { PACS_CORS_ORIGINS: 'https://nowhere.invalid', PACS_ANONYMOUS_READ: 'true' } });
    const ct = syntheticSeries(20, { studyUID: ctStudy, modality: 'CT', rows: 256, columns: 256, patientName: CT_PATIENT.dicom, patientID: 'E2E-CT', studyDescription: 'CT phantom' });
    const us = syntheticInstance({ studyUID: usStudy, modality: 'US', frames: 40, rows: 256, columns: 256, patientName: US_PATIENT.dicom, patientID: 'E2E-US', studyDescription: 'US cine' });
    // Storing still needs a credential (stow sends the administrator's key): anonymous is read-only.
    const photo = await photoWithoutModality(artifacts, 'photo', [`PatientName=${PHOTO_PATIENT.dicom}`, 'PatientID=E2E-PHOTO']);
    // Its patient's name, ID, birth date and sex empty, as img2dcm leaves them.
    const bare = await photoWithoutModality(artifacts, 'bare', [`StudyDescription=${BARE_PHOTO}`]);
    for (const files of [ct, [us], [photo], [bare]]) {
      const response = await stow(pacs.dicomweb, files);
      expect(response.status, await response.text()).toBe(200);
    }
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  it('lists the stored studies by patient name, a photo without Modality too, and filters them by part of a name', async () => {
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      await page.goto(`${pacs.url}/`);
      for (const name of [CT_PATIENT.shown, US_PATIENT.shown, PHOTO_PATIENT.shown]) {
        await page
          .getByText(name, { exact: true })
          .first()
          .waitFor({ timeout: 45_000 })
          .catch(async () => fail(v, `study list never showed ${name}`));
      }
      // The photo whose patient attributes are all empty too.
      await page
        .getByText(BARE_PHOTO, { exact: true })
        .first()
        .waitFor({ timeout: 15_000 })
        .catch(async () => fail(v, 'study list never showed the photo without patient attributes'));
      // OHIF sends PatientName=*sOnO* (wildcards, as supportsWildcard promises); matching is case-insensitive.
      await page.goto(`${pacs.url}/?patientName=sOnO`);
      await page
        .getByText(US_PATIENT.shown, { exact: true })
        .first()
        .waitFor({ timeout: 30_000 })
        .catch(async () => fail(v, `filtered study list never showed ${US_PATIENT.shown}`));
      if (await page.getByText(CT_PATIENT.shown, { exact: true }).count()) await fail(v, `filter "sOnO" still lists ${CT_PATIENT.shown}`);
      await expectCleanConversation(v);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  it('draws the CT slice with its full grey range and the bright disc', async () => {
    const v = await openPage(browser, pacs, artifacts);
    try {
      await v.page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${ctStudy}`);
      const viewport = await firstViewport(v);
      const image = await waitForImage(v, viewport, 'ct');
      // Window 40/400 after rescale -1024 clips an eighth of the background to black; a viewer that
      // missed the VOI or rescale attributes in the metadata would show no black at all.
      if (image.blackFraction < 0.05) await fail(v, `ct: drawn without its window (${summary(image)})`, image);
      await expectCleanConversation(v);
    } finally {
      await v.page.context().close();
    }
  }, 120_000);

  it('shows study browser thumbnails rendered by the /thumbnail resources', async () => {
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    const thumbnails: Array<{ url: string; status: number; type?: string }> = [];
    page.on('response', (response) => {
      if (response.url().startsWith(`${pacs.dicomweb}/`) && /\/thumbnail(\?|$)/.test(response.url())) {
        thumbnails.push({ url: response.url(), status: response.status(), type: response.headers()['content-type'] });
      }
    });
    try {
      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${ctStudy}`);
      await firstViewport(v);
      for (const deadline = Date.now() + 30_000; thumbnails.length === 0 && Date.now() < deadline; ) await page.waitForTimeout(250);
      if (thumbnails.length === 0) await fail(v, 'the study browser asked for no /thumbnail');
      expect(thumbnails, JSON.stringify(thumbnails)).toContainEqual(expect.objectContaining({ url: expect.stringContaining(`/studies/${ctStudy}/series/`), status: 200, type: 'image/jpeg' }));
      expect(thumbnails.filter((t) => t.status !== 200), 'thumbnails that failed').toEqual([]);
      // The JPEG is what the study browser shows: an <img> from the fetched blob.
      await page
        .locator('img[src^="blob:"]')
        .first()
        .waitFor({ timeout: 15_000 })
        .catch(async () => fail(v, 'no thumbnail image appeared in the study browser'));
      await expectCleanConversation(v);
    } finally {
      await page.context().close();
    }
  }, 120_000);

  it('scrolls through the frames of the multi-frame ultrasound', async () => {
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${usStudy}`);
      const viewport = await firstViewport(v);
      const first = await waitForImage(v, viewport, 'us-frame-1');
      // If cine played by itself, a change after scrolling would prove nothing.
      await page.waitForTimeout(1_000);
      const still = await picture(viewport);
      if (changedFraction(first, still) > 0.001) await fail(v, 'the ultrasound changes without any scrolling (cine playing?)', still);

      const box = (await viewport.boundingBox())!;
      await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
      await page.mouse.wheel(0, 120);
      const afterWheel = await waitForChange(v, viewport, first, 'us-after-wheel');

      await page.keyboard.press('ArrowDown');
      await waitForChange(v, viewport, afterWheel, 'us-after-arrow-down');
      await expectCleanConversation(v);
    } finally {
      await page.context().close();
    }
  }, 120_000);
});
