import os from 'node:os';
import path from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { expectCleanConversation, fail, firstViewport, launchChromium, openPage, picture, summary, waitForImage, type Exchange, type ViewerPage } from './viewer-page.js';

/** The server's allowance for replicas' clocks (auth/viewer-tokens.ts): a token works this long past its exp. */
const CLOCK_TOLERANCE_MS = 5_000;

type ViewerLink = { viewer_url: string; study_uid: string; expires_in: number; expires_at: string };

/**
 * The EMR's way in: no anonymous reads, an API key that may only ask for links, and OHIF opened on the
 * link it gets back. The link's token is the browser's only credential.
 */
describe('EMR viewer links opened in OHIF', () => {
  let pacs: RunningServer;
  let browser: Browser;
  const studyA = newUid();
  const studyB = newUid();
  /** Anna's earlier study, which a link with priors=true shows beside studyA. */
  const priorA = newUid();
  const artifacts = path.join(os.tmpdir(), `pacs-e2e-links-${process.pid}`);
  let emrKey: string;
  let link: ViewerLink;
  // Asked for up front so that its expiry runs out while the other tests run.
  let shortLink: ViewerLink;

  const askForLink = async (study: string, query = ''): Promise<ViewerLink> => {
    const response = await fetch(`${pacs.url}/api/v1/studies/${study}/viewer-url${query}`, { headers: { Authorization: `Bearer ${emrKey}` } });
    expect(response.status, await response.clone().text()).toBe(200);
    return (await response.json()) as ViewerLink;
  };

  beforeAll(async () => {
    // No PACS_VIEWER_URL: links open the OHIF that PACS-lite serves on its own origin.
    pacs = await startServer({ env: { PACS_ANONYMOUS_READ: 'false' } });
    const series = (studyUID: string, patientName: string, patientID: string, studyDescription: string, studyDate: string) =>
      syntheticSeries(5, { studyUID, modality: 'CT', rows: 256, columns: 256, patientName, patientID, studyDescription, studyDate });
    for (const files of [
      series(studyA, 'Linked^Anna', 'E2E-A', 'CT phantom', '20260101'),
      series(priorA, 'Linked^Anna', 'E2E-A', 'CT last year', '20250101'),
      series(studyB, 'Other^Otto', 'E2E-B', 'CT of Otto', '20260101'),
    ]) {
      const response = await stow(pacs.dicomweb, files);
      expect(response.status, await response.text()).toBe(200);
    }
    const created = await adminFetch(`${pacs.url}/api/v1/keys`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'EMR (e2e)', role: 'viewer-links' }),
    });
    expect(created.status, await created.clone().text()).toBe(201);
    emrKey = ((await created.json()) as { key: string }).key;
    [link, shortLink] = await Promise.all([askForLink(studyA), askForLink(studyA, '?expires_in=1')]);
    browser = await launchChromium();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  it('opens the study the link is for, with the token on every DICOMweb request', async () => {
    expect(link.study_uid).toBe(studyA);
    expect(link.viewer_url.startsWith(`${pacs.url}/viewer?`)).toBe(true);
    const v = await openPage(browser, pacs, artifacts);
    try {
      await v.page.goto(link.viewer_url);
      const viewport = await firstViewport(v);
      await waitForImage(v, viewport, 'linked study');
      await expectCleanConversation(v);
      if (!v.journal.requests.some((r) => /\/frames\/\d+$/.test(new URL(r.url).pathname))) await fail(v, 'the image was drawn without a frame request to PACS-lite');
      await expectAllAuthorized(v);
      // viewer/README.md promises that the token does not stay in the address bar, history or bookmarks.
      expect(new URL(v.page.url()).searchParams.has('token')).toBe(false);
    } finally {
      await v.page.context().close();
    }
  }, 60_000);

  it('shows nothing of another study when the token is used for it', async () => {
    const url = new URL(link.viewer_url);
    url.searchParams.set('StudyInstanceUIDs', studyB);
    const v = await openPage(browser, pacs, artifacts);
    const searches = new Map<string, Promise<string>>();
    v.page.on('response', (response) => {
      const { pathname, searchParams } = new URL(response.url());
      if (pathname === '/dicom-web/studies' && searchParams.get('StudyInstanceUID') === studyB) searches.set(response.url(), response.text());
    });
    try {
      await v.page.goto(url.toString());
      await settled(v, (r) => new URL(r.url).pathname.includes(studyB));
      // A resource of study B does not exist for this token; a search for it finds nothing, as a
      // search for a study never stored would.
      const resources = v.journal.requests.filter((r) => new URL(r.url).pathname.includes(studyB));
      const shown = resources.filter((r) => r.status !== 404);
      if (shown.length) await fail(v, `${shown.length} of ${resources.length} requests for study B's resources were answered with something other than 404`);
      for (const [searchUrl, body] of searches) {
        if ((await body).trim() !== '[]') await fail(v, `the search ${searchUrl} found something with a token for another study: ${(await body).slice(0, 200)}`);
        // The same search by the administrator finds B: the token, not a missing study, made it empty.
        const asAdmin = await adminFetch(searchUrl, { headers: { Accept: 'application/dicom+json' } });
        expect(((await asAdmin.json()) as unknown[]).length).toBe(1);
      }
      await expectNothingDrawn(v, 'another study');
      await expectAllAuthorized(v);
    } finally {
      await v.page.context().close();
    }
  }, 60_000);

  it("shows the patient's earlier study in the study browser with priors=true, and nothing of another patient", async () => {
    const withPriors = await askForLink(studyA, '?priors=true');
    const v = await openPage(browser, pacs, artifacts);
    try {
      await v.page.goto(withPriors.viewer_url);
      await firstViewport(v);
      await v.page.getByText('CT last year').first().waitFor({ timeout: 30_000 }).catch(async () => fail(v, "the study browser never listed the patient's earlier study"));
      if (await v.page.getByText('CT of Otto').count()) await fail(v, "the study browser lists another patient's study");
      const other = v.journal.requests.filter((r) => r.url.includes(studyB));
      if (other.length) await fail(v, `the viewer asked for ${other.length} resources of another patient's study`);
      await expectAllAuthorized(v);
    } finally {
      await v.page.context().close();
    }
  }, 60_000);

  it('refuses an expired link with 401 and draws nothing', async () => {
    // Past exp and the clock tolerance, with a second to spare for exp's whole-second rounding.
    const usable = Date.parse(shortLink.expires_at) + CLOCK_TOLERANCE_MS + 1_000 - Date.now();
    if (usable > 0) await new Promise((resolve) => setTimeout(resolve, usable));
    const v = await openPage(browser, pacs, artifacts);
    try {
      await v.page.goto(shortLink.viewer_url);
      await settled(v, () => true);
      const notRefused = v.journal.requests.filter((r) => r.status !== 401 || !/expired/.test(r.challenge ?? ''));
      if (notRefused.length) await fail(v, `${notRefused.length} DICOMweb requests with the expired token were not refused as expired`);
      await expectNothingDrawn(v, 'expired link');
      await expectAllAuthorized(v);
    } finally {
      await v.page.context().close();
    }
  }, 60_000);

  it('keeps viewer tokens out of the server log', async () => {
    const log = pacs.logs.join('\n');
    const parts = ({ viewer_url }: ViewerLink) => {
      const token = new URL(viewer_url).searchParams.get('token')!;
      const { jti } = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string };
      return { token, jti, signature: token.split('.')[2]! };
    };
    // The log did see the link's requests, by the token's id, and the expired link's refusals; otherwise
    // its silence would prove nothing.
    expect(log).toContain(`"credential":"token:${parts(link).jti}"`);
    expect(log).toMatch(/"path":"\/dicom-web\/studies[^"]*","status":401/);
    for (const { token, signature } of [parts(link), parts(shortLink)]) {
      expect(log).not.toContain(token);
      expect(log).not.toContain(signature);
    }
  });

  /** Every request the viewer made to PACS-lite carried an Authorization header. */
  async function expectAllAuthorized(v: ViewerPage): Promise<void> {
    const bare = v.journal.requests.filter((r) => !r.authorized && r.method !== 'OPTIONS');
    if (bare.length) await fail(v, `${bare.length} DICOMweb requests went out without Authorization`);
  }

  /**
   * Waits until OHIF has asked PACS-lite what `expected` describes, every request is answered, and
   * nothing new has been asked for a while: then the viewer has given up, not merely not started.
   */
  async function settled(v: ViewerPage, expected: (r: Exchange) => boolean): Promise<void> {
    const quiet = 2_000;
    let count = -1;
    let since = Date.now();
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await v.page.waitForTimeout(250)) {
      const { requests } = v.journal;
      if (requests.length !== count) [count, since] = [requests.length, Date.now()];
      const done = requests.some(expected) && requests.every((r) => r.status !== undefined);
      if (done && Date.now() - since >= quiet) return;
    }
    await fail(v, 'the viewer did not finish talking to PACS-lite in 30 s');
  }

  /** No viewport, or only viewports without an image in them. */
  async function expectNothingDrawn(v: ViewerPage, label: string): Promise<void> {
    const viewports = v.page.locator('.cornerstone-viewport-element');
    for (let i = 0; i < (await viewports.count()); i++) {
      const viewport = viewports.nth(i);
      if (!(await viewport.isVisible())) continue;
      const shot = await picture(viewport);
      if (shot.greyLevels > 4) await fail(v, `${label}: viewport ${i} shows an image (${summary(shot)})`, shot);
    }
  }
});
