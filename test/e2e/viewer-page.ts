import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { chromium, type Browser, type BrowserContextOptions, type Locator, type Page } from 'playwright-core';
import sharp from 'sharp';
import type { RunningServer } from '../helpers/server.js';

/** Debian's Chromium; these tests never download a browser. */
const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** A missing browser fails the suite rather than skipping it: a skipped viewer test proves nothing, locally or on CI. */
export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM)) throw new Error(`there is no Chromium at ${CHROMIUM}; install Debian's chromium package (apt-get install chromium)`);
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
}

/** One DICOMweb request the browser made to PACS-lite, and what came back. */
export type Exchange = {
  method: string;
  url: string;
  accept: string;
  /** Whether it carried an Authorization header; the value is a secret and is not kept. */
  authorized: boolean;
  status?: number;
  /** The WWW-Authenticate challenge of a 401. */
  challenge?: string;
};

/** What the browser did on the PACS origin and what went wrong anywhere, for assertions and failure messages. */
export type Journal = { requests: Exchange[]; problems: string[] };

/** A page in its own browser context, its conversation with `pacs` recorded; failures leave a screenshot in `artifacts`. */
export type ViewerPage = { page: Page; journal: Journal; pacs: RunningServer; artifacts: string };

export async function openPage(browser: Browser, pacs: RunningServer, artifacts: string, options: BrowserContextOptions = {}): Promise<ViewerPage> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...options });
  // The onboarding tour and the investigational-use banner sit on top of the viewport; a returning
  // user has dismissed both, which is what these keys record.
  await context.addInitScript(() => {
    // Init scripts run in every frame, Chromium's PDF viewer too, which has no storage.
    if (!localStorage || !sessionStorage) return;
    localStorage.setItem('shownTours', JSON.stringify(['basicViewerTour']));
    localStorage.setItem('investigationalUseDialog', JSON.stringify({ expiryDate: '2999-01-01T00:00:00Z' }));
    sessionStorage.setItem('investigationalUseDialog', 'hidden');
  });
  const page = await context.newPage();
  const journal: Journal = { requests: [], problems: [] };
  // The viewer's own files come from the same origin; the conversation recorded is its DICOMweb one.
  const fromPacs = (url: string) => url.startsWith(`${pacs.dicomweb}/`) || url.startsWith(`${pacs.url}/wado?`);
  page.on('console', (message) => {
    if (message.type() === 'error') journal.problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => journal.problems.push(`page error: ${error.message}`));
  page.on('request', (request) => {
    if (!fromPacs(request.url())) return;
    const headers = request.headers();
    journal.requests.push({ method: request.method(), url: request.url(), accept: headers['accept'] ?? '', authorized: 'authorization' in headers });
  });
  page.on('response', (response) => {
    if (!fromPacs(response.url())) return;
    const entry = journal.requests.findLast((r) => r.url === response.url() && r.method === response.request().method() && r.status === undefined);
    if (entry) {
      entry.status = response.status();
      entry.challenge = response.headers()['www-authenticate'];
    }
    if (response.status() >= 400) {
      journal.problems.push(`${response.status()} from ${response.request().method()} ${response.url()} (Accept: ${response.request().headers()['accept']})`);
    }
  });
  page.on('requestfailed', (request) => {
    const what = fromPacs(request.url()) ? 'DICOMweb request failed' : 'request failed';
    journal.problems.push(`${what}: ${request.method()} ${request.url()}: ${request.failure()?.errorText}`);
  });
  return { page, journal, pacs, artifacts };
}

/** OHIF talked to PACS-lite without an error status or a failed request (CORS refusals show up as failures). */
export async function expectCleanConversation(v: ViewerPage): Promise<void> {
  // An abort is OHIF cancelling its own prefetch, not an answer from the server.
  const pacsErrors = v.journal.problems.filter((p) => (p.startsWith('DICOMweb request failed') && !p.endsWith('net::ERR_ABORTED')) || /^\d{3} from /.test(p));
  if (pacsErrors.length) await fail(v, `the viewer met ${pacsErrors.length} failed or refused DICOMweb requests`);
}

export async function firstViewport(v: ViewerPage): Promise<Locator> {
  const viewport = v.page.locator('.cornerstone-viewport-element').first();
  await viewport.waitFor({ state: 'visible', timeout: 40_000 }).catch(() => fail(v, 'no viewport appeared'));
  return viewport;
}

/** Shows a windowed image: many grey levels and a wide white area (the disc). */
export function showsImage(p: Picture): boolean {
  return p.greyLevels >= 48 && p.longestWhiteRun >= 0.15 * p.side;
}

/** Polls the viewport until it shows a windowed image. */
export async function waitForImage(v: ViewerPage, viewport: Locator, label: string): Promise<Picture> {
  let last: Picture | undefined;
  for (const deadline = Date.now() + 30_000; Date.now() < deadline; await v.page.waitForTimeout(500)) {
    last = await picture(viewport);
    if (showsImage(last)) return last;
  }
  return fail(v, `${label}: no image drawn (${summary(last)})`, last);
}

export async function waitForChange(v: ViewerPage, viewport: Locator, before: Picture, label: string): Promise<Picture> {
  let last: Picture | undefined;
  for (const deadline = Date.now() + 15_000; Date.now() < deadline; await v.page.waitForTimeout(250)) {
    last = await picture(viewport);
    if (last.greyLevels >= 48 && changedFraction(before, last) > 0.01) return last;
  }
  return fail(v, `${label}: the image did not change (${last ? `${(changedFraction(before, last) * 100).toFixed(2)} % of pixels differ` : 'no capture'})`, last);
}

export async function fail(v: ViewerPage, message: string, shot?: Picture): Promise<never> {
  const { page, journal, pacs, artifacts } = v;
  await fs.mkdir(artifacts, { recursive: true });
  const file = path.join(artifacts, `${message.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`);
  if (shot) await fs.writeFile(file, shot.png);
  else await page.screenshot({ path: file }).catch(() => {});
  const requests = journal.requests.map((r) => `  ${r.status ?? '---'} ${r.method} ${r.url}  [Accept: ${r.accept}]${r.authorized ? '' : ' [no Authorization]'}`);
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

/** A screenshot of the middle of a viewport: the corners and edges hold text overlays and markers. */
export type Picture = {
  png: Buffer;
  grey: Uint8Array;
  width: number;
  height: number;
  side: number;
  greyLevels: number;
  longestWhiteRun: number;
  blackFraction: number;
};

export async function picture(viewport: Locator): Promise<Picture> {
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

export function changedFraction(a: Picture, b: Picture): number {
  if (a.width !== b.width || a.height !== b.height) return 1;
  let changed = 0;
  for (let i = 0; i < a.grey.length; i++) if (Math.abs(a.grey[i]! - b.grey[i]!) > 8) changed++;
  return changed / a.grey.length;
}

export function summary(p: Picture | undefined): string {
  return p
    ? `${p.greyLevels} grey levels, longest white run ${p.longestWhiteRun} px of ${p.side}, ${(p.blackFraction * 100).toFixed(1)} % black`
    : 'no capture';
}
