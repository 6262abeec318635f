import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';
import { launchChromium } from './viewer-page.js';

/** The administrator's pages in Chromium, signed in with the admin key as HTTP Basic's password. */
describe('the administrator pages', () => {
  let pacs: RunningServer;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  const anna = newUid();
  const otto = newUid();

  beforeAll(async () => {
    pacs = await startServer();
    for (const [study, id] of [[anna, 'ADM-ANNA'], [otto, 'ADM-OTTO']] as const) {
      const stored = await stow(pacs.dicomweb, syntheticSeries(2, { studyUID: study, patientID: id, rows: 16, columns: 16 }));
      expect(stored.status, await stored.text()).toBe(200);
    }
    // One read of each study, so the trail has something per patient to filter.
    for (const study of [anna, otto]) expect((await adminFetch(`${pacs.dicomweb}/studies/${study}/metadata`)).status).toBe(200);
    browser = await launchChromium();
    // A phone's width: the pages must work there too.
    admin = await browser.newContext({ httpCredentials: { username: 'admin', password: TEST_ADMIN_KEY }, viewport: { width: 390, height: 800 } });
    page = await admin.newPage();
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  it('asks a browser without a credential to sign in, and refuses a read key', async () => {
    // Headless Chromium cannot show the sign-in prompt (it fails the navigation with ERR_INVALID_AUTH_CREDENTIALS): asked as a page would.
    const answer = await fetch(`${pacs.url}/admin/keys`, { headers: { Accept: 'text/html' } });
    expect(answer.status).toBe(401);
    expect(answer.headers.get('www-authenticate')).toMatch(/^Basic /);
    const made = await adminFetch(`${pacs.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'reader', role: 'read' }) });
    const reader = await browser.newContext({ httpCredentials: { username: 'r', password: ((await made.json()) as { key: string }).key } });
    expect((await (await reader.newPage()).goto(`${pacs.url}/admin/keys`))?.status()).toBe(403);
    await reader.close();
  });

  it('creates a key and shows it once, the key works, and revoking it ends it', async () => {
    await page.goto(`${pacs.url}/admin/keys`);
    await page.fill('input[name=name]', 'Ward 3 workstation');
    await page.selectOption('select[name=role]', 'read');
    await page.click('button:has-text("Create key")');
    const key = (await page.textContent('#key-value'))!.trim();
    expect(key).toMatch(/^pacs_/);
    const works = await fetch(`${pacs.dicomweb}/studies`, { headers: { Authorization: `Bearer ${key}` } });
    expect(works.status).toBe(200);
    // Shown once: the list afterwards has its hint only.
    await page.goto(`${pacs.url}/admin/keys`);
    expect(await page.content()).not.toContain(key);
    const row = page.locator('#keys tr', { hasText: 'Ward 3 workstation' });
    expect(await row.locator('.state').textContent()).toBe('active');
    await row.locator('button:has-text("Revoke")').click();
    await page.waitForURL(`${pacs.url}/admin/keys`);
    expect(await page.locator('#keys tr', { hasText: 'Ward 3 workstation' }).locator('.state').textContent()).toMatch(/^revoked/);
    expect((await fetch(`${pacs.dicomweb}/studies`, { headers: { Authorization: `Bearer ${key}` } })).status).toBe(401);
  });

  it('refuses a form posted from another site, even with the admin signed in', async () => {
    const foreign = await page.request.post(`${pacs.url}/admin/keys`, { form: { name: 'planted', role: 'admin' }, headers: { Origin: 'https://evil.example' } });
    expect(foreign.status()).toBe(403);
    const keys = (await (await adminFetch(`${pacs.url}/api/v1/keys`)).json()) as Array<{ name: string }>;
    expect(keys.map((k) => k.name)).not.toContain('planted');
    const ours = await page.request.post(`${pacs.url}/admin/keys`, { form: { name: 'from our page', role: 'read' }, headers: { Origin: pacs.url } });
    expect(ours.status()).toBe(201);
  });

  it('filters the audit trail by patient, study, key and day, a page at a time', async () => {
    await page.goto(`${pacs.url}/admin/audit`);
    await page.fill('input[name=patient]', 'ADM-ANNA');
    await page.click('button:has-text("Filter")');
    const studies = await page.locator('#audit tbody td:nth-child(5)').allTextContents();
    expect(studies.length).toBeGreaterThan(0);
    expect(new Set(studies)).toEqual(new Set([anna]));

    await page.goto(`${pacs.url}/admin/audit?study=${otto}`);
    expect(new Set(await page.locator('#audit tbody td:nth-child(5)').allTextContents())).toEqual(new Set([otto]));

    const today = new Date().toISOString().slice(0, 10);
    await page.goto(`${pacs.url}/admin/audit`);
    await page.fill('input[name=credential]', 'none');
    await page.fill('input[name=since]', today);
    await page.click('button:has-text("Filter")');
    // The browser's first unauthenticated visit was refused and recorded as "none".
    const who = await page.locator('#audit tbody td:nth-child(2)').allTextContents();
    expect(who.length).toBeGreaterThan(0);
    expect(new Set(who)).toEqual(new Set(['none']));
    await page.fill('input[name=until]', '2020-01-01');
    await page.click('button:has-text("Filter")');
    expect(await page.locator('#audit tbody tr').count()).toBe(0);

    // More than a page of events: the first page links to the next, which holds the rest.
    for (let i = 0; i < 55; i++) await adminFetch(`${pacs.dicomweb}/studies/${anna}/series`);
    await page.goto(`${pacs.url}/admin/audit?study=${anna}`);
    expect(await page.locator('#audit tbody tr').count()).toBe(50);
    await page.click('a[rel=next]');
    const second = await page.locator('#audit tbody tr').count();
    expect(second).toBeGreaterThan(5);
    expect(second).toBeLessThanOrEqual(50);
    expect(page.url()).toContain('page=2');
  });

  it('shows the storage figures', async () => {
    await page.goto(`${pacs.url}/admin`);
    expect(page.url()).toBe(`${pacs.url}/admin/storage`);
    expect(await page.textContent('[data-figure=instances]')).toBe('4');
    expect(await page.textContent('[data-figure=bytes]')).toMatch(/^\d+(\.\d)? (bytes|KiB)$/);
    expect(await page.textContent('[data-figure=free]')).toMatch(/^\d+(\.\d)? (MiB|GiB|TiB)/);
    expect(await page.textContent('[data-figure=damaged]')).toBe('0 missing, 0 changed');
    expect(await page.textContent('[data-figure=verify]')).toBeTruthy();
  });
});
