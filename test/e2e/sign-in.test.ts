import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { photoWithoutModality } from '../fixtures/img2dcm-photo.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { startServer, stow, type RunningServer } from '../helpers/server.js';
import { createUser } from '../helpers/staff.js';
import { firstSignIn, signOut, submitSignIn } from './staff.js';
import { expectCleanConversation, fail, firstViewport, launchChromium, openPage, waitForImage, type ViewerPage } from './viewer-page.js';

const LOCKOUT_AFTER = 3;
const LOCKOUT_MS = 4_000;
const PATIENTS = ['Tomography, Clara', 'Sonography, Sven', 'Photo, Paula'];
const WRONG = 'the name or the password is wrong';

/**
 * Staff sign in at /login and use the OHIF PACS-lite serves, with no anonymous reads and no token in the URL: the
 * session cookie is their credential, on the page and on every DICOMweb call the viewer makes.
 */
describe('staff signing in to the viewer in Chromium', () => {
  let pacs: RunningServer;
  let browser: Browser;
  const ctStudy = newUid();
  const artifacts = path.join(os.tmpdir(), `pacs-e2e-sign-in-${process.pid}`);

  beforeAll(async () => {
    await fs.mkdir(artifacts, { recursive: true });
    pacs = await startServer({ env: { PACS_SIGN_IN_LOCKOUT_AFTER: String(LOCKOUT_AFTER), PACS_SIGN_IN_LOCKOUT: `${LOCKOUT_MS / 1000}s` } });
    const ct = syntheticSeries(10, { studyUID: ctStudy, modality: 'CT', rows: 256, columns: 256, patientName: 'Tomography^Clara', patientID: 'SI-CT' });
    const us = syntheticInstance({ modality: 'US', rows: 64, columns: 64, patientName: 'Sonography^Sven', patientID: 'SI-US' });
    // A photo turned into DICOM by img2dcm has no Modality: the list must show it with the others.
    const photo = await photoWithoutModality(artifacts, 'photo', ['PatientName=Photo^Paula', 'PatientID=SI-PHOTO']);
    for (const files of [ct, [us], [photo]]) {
      const stored = await stow(pacs.dicomweb, files);
      expect(stored.status, await stored.text()).toBe(200);
    }
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  /** OHIF's study list with every stored study, as a signed-in user sees it. */
  async function expectStudyList(v: ViewerPage): Promise<void> {
    for (const name of PATIENTS) {
      await v.page
        .getByText(name, { exact: true })
        .first()
        .waitFor({ timeout: 45_000 })
        .catch(async () => fail(v, `study list never showed ${name}`));
    }
    // The pager counts what QIDO answered: every study, and no other.
    const count = `1-${PATIENTS.length} of ${PATIENTS.length}`;
    await v.page
      .getByText(count, { exact: true })
      .waitFor({ timeout: 15_000 })
      .catch(async () => fail(v, `the study list does not say "${count}"`));
  }

  /** A request from the page itself, as the viewer's own are made: same origin, the session cookie and nothing else. */
  const studiesStatus = (page: Page) => page.evaluate(async () => (await fetch('/dicom-web/studies', { headers: { Accept: 'application/dicom+json' } })).status);

  it('signs in at /login, lists every study (a photo without Modality too), draws a CT, and is refused once signed out', async () => {
    const oneTime = await createUser(pacs, 'dr.grey', ['read']);
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      await page.goto(`${pacs.url}/`);
      expect(page.url()).toBe(`${pacs.url}/login?next=%2F`);
      await firstSignIn(page, 'dr.grey', oneTime, 'grey chose this one');
      expect(page.url()).toBe(`${pacs.url}/`);
      await expectStudyList(v);
      // The viewer's calls carry the cookie, never a token or a key.
      expect(v.journal.requests.filter((r) => r.authorized)).toEqual([]);

      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${ctStudy}`);
      await waitForImage(v, await firstViewport(v), 'ct after sign-in');
      await expectCleanConversation(v);

      await signOut(page, pacs);
      expect(await studiesStatus(page)).toBe(401);
      await page.goto(`${pacs.url}/viewer?StudyInstanceUIDs=${ctStudy}`);
      expect(page.url()).toBe(`${pacs.url}/login?next=${encodeURIComponent(`/viewer?StudyInstanceUIDs=${ctStudy}`)}`);
    } finally {
      await page.context().close();
    }
  }, 180_000);

  it('refuses a wrong password and an unknown name in the same words, setting no cookie', async () => {
    await createUser(pacs, 'dr.white', ['read']);
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      const said: string[] = [];
      for (const [login, password] of [['dr.white', 'not the password'], ['dr.nobody', 'not the password']]) {
        await page.goto(`${pacs.url}/login`);
        await submitSignIn(page, login!, password!);
        expect(new URL(page.url()).pathname).toBe('/login');
        said.push((await page.textContent('[role=alert]'))!.trim());
      }
      expect(said[0]).toContain(WRONG);
      expect(said[1]).toBe(said[0]);
      expect(await page.context().cookies()).toEqual([]);
    } finally {
      await page.context().close();
    }
  }, 60_000);

  it(`locks an account after ${LOCKOUT_AFTER} failures, to its right password too, and lets it in once the lockout ends`, async () => {
    const oneTime = await createUser(pacs, 'dr.black', ['read']);
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      await page.goto(`${pacs.url}/login`);
      for (let i = 1; i <= LOCKOUT_AFTER; i++) {
        await submitSignIn(page, 'dr.black', `wrong guess ${i}`);
        expect(await page.textContent('[role=alert]')).toContain(WRONG);
      }
      const lockedAt = Date.now();
      await submitSignIn(page, 'dr.black', oneTime);
      expect(await page.textContent('[role=alert]')).toContain('too many failed sign-ins');
      expect(await page.context().cookies()).toEqual([]);

      await page.waitForTimeout(Math.max(0, lockedAt + LOCKOUT_MS + 250 - Date.now()));
      await submitSignIn(page, 'dr.black', oneTime);
      expect(new URL(page.url()).pathname).toBe('/account/password');
      // The one-time password opens nothing else: the viewer sends the user back to replace it.
      await page.goto(`${pacs.url}/`);
      expect(page.url()).toBe(`${pacs.url}/account/password?next=%2F`);
    } finally {
      await page.context().close();
    }
  }, 60_000);

  it("ends a disabled user's open session at once: the viewer's calls are refused and the next page is /login", async () => {
    const oneTime = await createUser(pacs, 'dr.brown', ['read']);
    const v = await openPage(browser, pacs, artifacts);
    const { page } = v;
    try {
      await page.goto(`${pacs.url}/`);
      await firstSignIn(page, 'dr.brown', oneTime, 'brown chose this one');
      await expectStudyList(v);
      expect(await studiesStatus(page)).toBe(200);

      const disabled = await cli(['users', 'disable', 'dr.brown'], pacs.dataDir, pacs.backend.env);
      expect(disabled.code, disabled.stderr).toBe(0);
      expect(await studiesStatus(page)).toBe(401);
      await page.reload();
      expect(page.url()).toBe(`${pacs.url}/login?next=%2F`);
    } finally {
      await page.context().close();
    }
  }, 180_000);
});
