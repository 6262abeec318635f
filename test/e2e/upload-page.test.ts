import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Browser, Page, Request } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { createUser } from '../helpers/staff.js';
import { firstSignIn } from './staff.js';
import { launchChromium } from './viewer-page.js';

const run = promisify(execFile);

/** The upload page in Chromium, used by a technician signed in with the upload role (issue 15). */
describe('the upload page', () => {
  let pacs: RunningServer;
  let browser: Browser;
  let page: Page;
  let work: string;

  beforeAll(async () => {
    pacs = await startServer();
    work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-upload-page-'));
    browser = await launchChromium();
    page = await (await browser.newContext({ viewport: { width: 390, height: 800 } })).newPage();
    const oneTime = await createUser(pacs, 'tech.tina', ['upload']);
    await page.goto(`${pacs.url}/upload`);
    expect(new URL(page.url()).pathname).toBe('/login');
    await firstSignIn(page, 'tech.tina', oneTime, 'tina chose this');
    expect(page.url()).toBe(`${pacs.url}/upload`);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
    if (work) await fs.rm(work, { recursive: true, force: true });
  });

  it('uploads a CD\'s folder matched to the order, each file with its result, and leaves its DICOMDIR', async () => {
    const study = newUid();
    const cd = path.join(work, 'CD', 'DICOM');
    await fs.mkdir(cd, { recursive: true });
    const files = syntheticSeries(25, { studyUID: study, patientID: 'STM-555', rows: 16, columns: 16 });
    await Promise.all(files.map((f, i) => fs.writeFile(path.join(cd, `IM${String(i).padStart(4, '0')}`), f)));
    await fs.writeFile(path.join(work, 'CD', 'DICOMDIR'), files[0]!);
    await fs.writeFile(path.join(work, 'CD', 'README.TXT'), 'a CD');

    const creating: string[] = [];
    const count = (request: Request) => {
      if (request.method() === 'POST' && request.url().endsWith('/api/v1/resumable')) creating.push(request.url());
    };
    page.on('request', count);
    await page.setInputFiles('#dicom input[name=folder]', path.join(work, 'CD'));
    await page.fill('#dicom input[name=patient_id]', 'PAT-555');
    await page.fill('#dicom input[name=accession_number]', 'ACC-555');
    await page.fill('#dicom input[name=reason]', 'CD from St Mary\'s for order ACC-555');
    await page.click('#dicom button:has-text("Upload")');
    await page.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 60_000 });
    page.off('request', count);
    expect(await page.textContent('#summary')).toBe('Done: 25 stored, 0 already stored, 1 refused');
    // 26 small files in two bundles (of at most 20), a request each: not a request a file.
    expect(creating).toHaveLength(2);
    // The README refused by name with its reason, the DICOMDIR not sent.
    expect(await page.locator('#results tbody tr[data-status=stored]').count()).toBe(25);
    expect(await page.locator('#results tbody tr', { hasText: 'README.TXT' }).textContent()).toMatch(/refused: not a DICOM file/);
    expect(await page.locator('#results tbody tr', { hasText: 'DICOMDIR' }).count()).toBe(0);
    expect(await page.locator('#results tbody tr[data-status=stored]').first().textContent()).toMatch(/set: PatientID, AccessionNumber|set: AccessionNumber, PatientID/);

    const found = (await (await adminFetch(`${pacs.dicomweb}/studies?PatientID=PAT-555`)).json()) as Array<Record<string, { Value?: unknown[] }>>;
    expect(found).toHaveLength(1);
    expect(found[0]!['00201208']!.Value).toEqual([25]);
  });

  it('uploads a 1,000-instance CT folder without freezing the tab', { timeout: 180_000 }, async () => {
    const study = newUid();
    const folder = path.join(work, 'CT-1000');
    await fs.mkdir(folder);
    const files = syntheticSeries(1000, { studyUID: study, patientID: 'CT-1000', modality: 'CT', rows: 16, columns: 16 });
    await Promise.all(files.map((f, i) => fs.writeFile(path.join(folder, `IM${String(i).padStart(4, '0')}`), f)));
    await page.goto(`${pacs.url}/upload`);
    // Chromium reports every task that held the page's main thread over 50 ms.
    await page.evaluate(() => {
      const longest = { ms: 0 };
      (window as unknown as { longest: typeof longest }).longest = longest;
      new PerformanceObserver((list) => list.getEntries().forEach((e) => (longest.ms = Math.max(longest.ms, e.duration)))).observe({ type: 'longtask', buffered: true });
    });
    await page.setInputFiles('#dicom input[name=folder]', folder);
    await page.click('#dicom button:has-text("Upload")');
    await page.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 150_000, polling: 500 });
    expect(await page.textContent('#summary')).toBe('Done: 1000 stored, 0 already stored, 0 refused');
    const longest = await page.evaluate(() => (window as unknown as { longest: { ms: number } }).longest.ms);
    expect(longest, 'the longest task on the page\'s main thread, ms').toBeLessThan(1000);
    const found = (await (await adminFetch(`${pacs.dicomweb}/studies?StudyInstanceUID=${study}`)).json()) as Array<Record<string, { Value?: unknown[] }>>;
    expect(found[0]!['00201208']!.Value).toEqual([1000]);
  });

  it('goes on from where it stopped when the connection drops in the middle of a file, and stores it once', async () => {
    // Two frames of 2048 × 2048 × 2 bytes and a header: a little over 16 MiB, three requests of at most 8 MiB (the
    // first creates the upload, the next two PATCH the rest); the last is cut off once, before the server has any of it.
    const [big] = syntheticSeries(1, { patientID: 'BIG-555', rows: 2048, columns: 2048, frames: 2 });
    const file = path.join(work, 'BIG0001');
    await fs.writeFile(file, big!);
    const seen: string[] = [];
    let cut = false;
    await page.route('**/api/v1/resumable/**', async (route) => {
      const request = route.request();
      seen.push(request.method());
      if (request.method() === 'PATCH' && seen.filter((m) => m === 'PATCH').length === 2 && !cut) {
        cut = true;
        return route.abort('connectionreset');
      }
      return route.continue();
    });
    try {
      await page.goto(`${pacs.url}/upload`);
      await page.setInputFiles('#dicom input[name=files]', file);
      await page.click('#dicom button:has-text("Upload")');
      await page.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 60_000 });
    } finally {
      await page.unroute('**/api/v1/resumable/**');
    }
    expect(await page.textContent('#summary')).toBe('Done: 1 stored, 0 already stored, 0 refused');
    // After the cut, it asked the server how far it had come (HEAD), and sent the rest from there: not the whole file.
    expect(seen).toEqual(['PATCH', 'PATCH', 'HEAD', 'PATCH']);
    const found = (await (await adminFetch(`${pacs.dicomweb}/instances?PatientID=BIG-555`)).json()) as unknown[];
    expect(found).toHaveLength(1);
  });

  it('takes a ZIP archive dropped on it: each DICOM file in it stored with the order\'s values, each with its row', async () => {
    const study = newUid();
    const dir = await fs.mkdtemp(path.join(work, 'zip-'));
    const files = syntheticSeries(2, { studyUID: study, patientID: 'ZIP-OLD', rows: 64, columns: 64 });
    await fs.mkdir(path.join(dir, 'DICOM'));
    for (const [i, bytes] of files.entries()) await fs.writeFile(path.join(dir, 'DICOM', `IM${i + 1}`), bytes);
    await fs.writeFile(path.join(dir, 'README.TXT'), 'Open VIEWER.EXE to see the images');
    const zip = path.join(work, 'cd-from-st-marys.zip');
    await run('zip', ['-r', '-q', zip, 'DICOM', 'README.TXT'], { cwd: dir });
    await page.goto(`${pacs.url}/upload`);
    await page.fill('#dicom input[name=patient_id]', 'ZIP-555');
    await page.fill('#dicom input[name=reason]', 'a CD from another hospital, matched to our patient');
    // Dropped as a file manager drops it (a DataTransfer holding the file), not chosen.
    const dataTransfer = await page.evaluateHandle(({ name, base64 }) => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([Uint8Array.from(atob(base64), (c) => c.charCodeAt(0))], name, { type: 'application/zip' }));
      return transfer;
    }, { name: 'cd-from-st-marys.zip', base64: (await fs.readFile(zip)).toString('base64') });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer });
    await page.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 60_000 });
    const rows = await page.$$eval('#results tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td'), (td) => td.textContent)));
    expect(await page.textContent('#summary'), JSON.stringify(rows)).toBe('Done: 2 stored, 0 already stored, 0 refused');
    expect(rows).toEqual(expect.arrayContaining([
      ['cd-from-st-marys.zip', 'done', '2 file(s) in it, and 1 that are not DICOM, left'],
      ['cd-from-st-marys.zip!/DICOM/IM1', 'done', 'stored (set: PatientID)'],
      ['cd-from-st-marys.zip!/DICOM/IM2', 'done', 'stored (set: PatientID)'],
    ]));
    const found = (await (await adminFetch(`${pacs.dicomweb}/studies/${study}/instances?includefield=00100020`)).json()) as Array<Record<string, { Value?: unknown[] }>>;
    expect(found.map((i) => i['00100020']!.Value![0])).toEqual(['ZIP-555', 'ZIP-555']);
  });

  it('makes photos and a PDF into a new study of the patient given', async () => {
    const photo = path.join(work, 'wound.jpg');
    await sharp({ create: { width: 64, height: 48, channels: 3, background: '#c84' } }).jpeg().toFile(photo);
    const pdf = path.join(work, 'referral.pdf');
    await fs.writeFile(pdf, '%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');
    await page.goto(`${pacs.url}/upload`);
    await page.setInputFiles('#photos input[name=files]', [photo, pdf]);
    await page.fill('#photos input[name=patient_id]', 'PHOTO-555');
    await page.fill('#photos input[name=study_description]', 'Wound check');
    await page.selectOption('#photos select[name=patient_sex]', 'F');
    await page.fill('#photos input[name=study_date]', '2026-11-30');
    await page.click('#photos button:has-text("Upload")');
    await page.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 60_000 });
    expect(await page.textContent('#summary')).toBe('Done: 2 stored, 0 already stored, 0 refused');
    const found = (await (await adminFetch(`${pacs.dicomweb}/studies?PatientID=PHOTO-555&includefield=00100040`)).json()) as Array<Record<string, { Value?: unknown[] }>>;
    expect(found[0]!['00081030']!.Value).toEqual(['Wound check']);
    expect(found[0]!['00080020']!.Value).toEqual(['20261130']);
    expect(found[0]!['00100040']!.Value).toEqual(['F']);
  });

  it('finds a patient\'s stored studies, adds photos to one of them, and downloads it as a ZIP', async () => {
    const study = newUid();
    const series = syntheticSeries(2, { studyUID: study, patientID: 'STORED-777', patientName: 'Ödegaard^Åse', studyDescription: 'MR knee', rows: 64, columns: 64 });
    expect((await stow(pacs.dicomweb, series)).status).toBe(200);
    // A technician who may also read: searching stored studies is a read.
    const oneTime = await createUser(pacs, 'tech.theo', ['upload', 'read']);
    const theo = await (await browser.newContext({ acceptDownloads: true })).newPage();
    try {
      await theo.goto(`${pacs.url}/upload`);
      await firstSignIn(theo, 'tech.theo', oneTime, 'theo chose this');
      await theo.fill('#search input[name=q]', 'ödegaard');
      await theo.click('#search button');
      await theo.waitForSelector(`#studies tr[data-study="${study}"]`);
      expect(await theo.textContent(`#studies tr[data-study="${study}"]`)).toContain('MR knee');

      await theo.click(`#studies tr[data-study="${study}"] button:has-text("Add photos")`);
      expect(await theo.isVisible('#joining')).toBe(true);
      expect(await theo.isVisible('#photos input[name=patient_id]')).toBe(false);
      const photo = path.join(work, 'knee.jpg');
      await sharp({ create: { width: 64, height: 48, channels: 3, background: '#48c' } }).jpeg().toFile(photo);
      await theo.setInputFiles('#photos input[name=files]', [photo]);
      await theo.fill('#photos input[name=series_description]', 'Knee, left, swelling');
      await theo.click('#photos button:has-text("Upload")');
      await theo.waitForFunction(() => document.getElementById('summary')?.textContent?.startsWith('Done'), undefined, { timeout: 60_000 });
      expect(await theo.textContent('#summary')).toBe('Done: 1 stored, 0 already stored, 0 refused');
      const seriesFound = (await (await adminFetch(`${pacs.dicomweb}/studies/${study}/series`)).json()) as Array<Record<string, { Value?: unknown[] }>>;
      expect(seriesFound.map((s) => s['0008103E']?.Value?.[0])).toContain('Knee, left, swelling');
      const photoSeries = seriesFound.find((s) => s['0008103E']?.Value?.[0] === 'Knee, left, swelling')!;
      expect(photoSeries['00080060']!.Value).toEqual(['XC']);

      // Its ZIP, from the row's link: the two MR files and the photo.
      const [download] = await Promise.all([theo.waitForEvent('download'), theo.click(`#studies tr[data-study="${study}"] a:has-text("ZIP")`)]);
      const zip = path.join(work, 'stored.zip');
      await download.saveAs(zip);
      const { stdout } = await run('python3', ['-c', 'import zipfile,sys\nprint("\\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))', zip]);
      expect(stdout.trim().split('\n')).toHaveLength(3);
    } finally {
      await theo.context().close();
    }
  });

  it('says that searching stored studies needs the read role to a technician without it', async () => {
    await page.goto(`${pacs.url}/upload`);
    await page.fill('#search input[name=q]', 'anyone');
    await page.click('#search button');
    await page.waitForFunction(() => document.getElementById('found')?.textContent?.includes('read role'));
  });

  it('is refused to staff without the upload role', async () => {
    const oneTime = await createUser(pacs, 'dr.rita', ['read']);
    const other = await (await browser.newContext()).newPage();
    await other.goto(`${pacs.url}/upload`);
    await firstSignIn(other, 'dr.rita', oneTime, 'rita chose this');
    expect(await other.textContent('.error')).toContain('needs the upload role');
    expect((await other.reload())?.status()).toBe(403);
    await other.context().close();
  });
});
