import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';
import { createUser } from '../helpers/staff.js';
import { signatureIsValid, startReceiver } from '../helpers/webhook-receiver.js';
import { waitFor } from '../helpers/wait.js';
import { firstSignIn, submitSignIn } from './staff.js';
import { launchChromium } from './viewer-page.js';

/** The administrator's pages in Chromium, used by an administrator signed in at /login. */
describe('the administrator pages', () => {
  let pacs: RunningServer;
  let browser: Browser;
  let admin: BrowserContext;
  let page: Page;
  const anna = newUid();
  const otto = newUid();

  beforeAll(async () => {
    pacs = await startServer({ env: { PACS_STUDY_QUIET_SECONDS: '1', PACS_WEBHOOK_RETRY_SECONDS: '1' } });
    for (const [study, id] of [[anna, 'ADM-ANNA'], [otto, 'ADM-OTTO']] as const) {
      const stored = await stow(pacs.dicomweb, syntheticSeries(2, { studyUID: study, patientID: id, rows: 16, columns: 16 }));
      expect(stored.status, await stored.text()).toBe(200);
    }
    // One read of each study, so the trail has something per patient to filter.
    for (const study of [anna, otto]) expect((await adminFetch(`${pacs.dicomweb}/studies/${study}/metadata`)).status).toBe(200);
    browser = await launchChromium();
    // A phone's width: the pages must work there too.
    admin = await browser.newContext({ viewport: { width: 390, height: 800 } });
    page = await admin.newPage();
    const oneTime = await createUser(pacs, 'it.admin', ['admin']);
    await page.goto(`${pacs.url}/admin/keys`);
    expect(page.url()).toBe(`${pacs.url}/login?next=${encodeURIComponent('/admin/keys')}`);
    await firstSignIn(page, 'it.admin', oneTime, 'the admin chose this');
    expect(page.url()).toBe(`${pacs.url}/admin/keys`);
  }, 180_000);

  afterAll(async () => {
    await browser?.close();
    await pacs?.stop();
  });

  it('refuses a signed-in user who is no admin with a plain page, and a read key; a tool still uses an admin key', async () => {
    const oneTime = await createUser(pacs, 'dr.reader', ['read']);
    const reader = await browser.newContext({ viewport: { width: 390, height: 800 } });
    const readerPage = await reader.newPage();
    await readerPage.goto(`${pacs.url}/admin/audit`);
    await firstSignIn(readerPage, 'dr.reader', oneTime, 'the reader chose this');
    expect(readerPage.url()).toBe(`${pacs.url}/admin/audit`);
    expect(await readerPage.textContent('h1')).toBe('Not allowed');
    expect(await readerPage.textContent('.error')).toContain('dr.reader');
    expect((await readerPage.reload())?.status()).toBe(403);
    await reader.close();

    const made = await adminFetch(`${pacs.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'reader', role: 'read' }) });
    const readKey = ((await made.json()) as { key: string }).key;
    expect((await fetch(`${pacs.url}/admin/keys`, { headers: { Authorization: `Bearer ${readKey}` } })).status).toBe(403);
    const basic = `Basic ${Buffer.from(`it:${TEST_ADMIN_KEY}`).toString('base64')}`;
    expect((await fetch(`${pacs.url}/admin/keys`, { headers: { Authorization: basic } })).status).toBe(200);
    const bare = await fetch(`${pacs.url}/admin/keys`);
    expect(bare.status).toBe(401);
    expect(bare.headers.get('www-authenticate')).toMatch(/^Basic /);
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

  it('lists the upload log, filtered by patient and study', async () => {
    await page.goto(`${pacs.url}/admin/storage`);
    await page.click('nav a:has-text("Uploads")');
    expect(page.url()).toBe(`${pacs.url}/admin/uploads`);
    expect(await page.locator('#uploads tbody tr').count()).toBeGreaterThanOrEqual(2);
    await page.fill('input[name=patient]', 'ADM-ANNA');
    await page.click('button:has-text("Filter")');
    const rows = page.locator('#uploads tbody tr');
    expect(await rows.count()).toBe(1);
    const cells = await rows.first().locator('td').allTextContents();
    expect(cells.slice(1, 2)).toEqual(['STOW-RS']);
    expect(cells.slice(4, 7)).toEqual(['2', '0', '0']);
    expect(cells.slice(7)).toEqual(['ADM-ANNA', anna]);
    await page.goto(`${pacs.url}/admin/uploads?study=${otto}`);
    expect(await page.locator('#uploads tbody td:nth-child(9)').allTextContents()).toEqual([otto]);
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
    // The browser's first visit, before signing in, was sent to /login and recorded as "none".
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

  it('makes a user who signs in with the one-time password and must change it, and changes their roles, password and state', async () => {
    await page.goto(`${pacs.url}/admin/users`);
    await page.fill('input[name=login]', 'tech.tom');
    await page.fill('input[name=displayName]', 'Tom the technician');
    await page.locator('form[action="/admin/users"] input[value=upload]').check();
    await page.click('button:has-text("Create user")');
    const oneTime = (await page.textContent('#one-time-password'))!.trim();
    expect(oneTime).toMatch(/^\S{10,}$/);
    const row = () => page.locator('#users tr[data-login="tech.tom"]');
    expect(await row().locator('td[data-label=Name]').textContent()).toBe('Tom the technician');
    expect(await row().locator('.state').textContent()).toBe('must change password');
    expect(await row().locator('td[data-label="Last sign-in"]').textContent()).toBe('never');
    // Shown once: the list afterwards does not hold it.
    await page.goto(`${pacs.url}/admin/users`);
    expect(await page.content()).not.toContain(oneTime);

    const tom = await browser.newContext({ viewport: { width: 390, height: 800 } });
    const tomPage = await tom.newPage();
    await tomPage.goto(`${pacs.url}/admin/storage`);
    await firstSignIn(tomPage, 'tech.tom', oneTime, 'tom chose this one');
    // Signed in as read and upload: not an admin.
    expect(await tomPage.textContent('h1')).toBe('Not allowed');
    expect((await tomPage.request.get(`${pacs.dicomweb}/studies`)).status()).toBe(200);
    await page.reload();
    expect(await row().locator('.state').textContent()).toBe('active');
    expect(await row().locator('td[data-label="Last sign-in"]').textContent()).toMatch(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}$/);

    // Roles apply from Tom's next request.
    await row().locator('input[value=admin]').check();
    await row().locator('button:has-text("Save roles")').click();
    await page.waitForURL(`${pacs.url}/admin/users`);
    expect(await row().locator('input[value=admin]').isChecked()).toBe(true);
    expect((await tomPage.reload())?.status()).toBe(200);
    expect(await tomPage.textContent('h1')).toBe('Storage');
    await row().locator('input[value=admin]').uncheck();
    await row().locator('input[value=upload]').uncheck();
    await row().locator('button:has-text("Save roles")').click();
    await page.waitForURL(`${pacs.url}/admin/users`);
    expect((await tomPage.reload())?.status()).toBe(403);
    expect((await tomPage.request.get(`${pacs.dicomweb}/studies`)).status()).toBe(200);

    // A reset ends Tom's session and gives a new one-time password; the old password is refused.
    await row().locator('button:has-text("Reset password")').click();
    const reset = (await page.textContent('#one-time-password'))!.trim();
    expect(reset).not.toBe(oneTime);
    await tomPage.reload();
    expect(new URL(tomPage.url()).pathname).toBe('/login');
    await submitSignIn(tomPage, 'tech.tom', 'tom chose this one');
    expect(await tomPage.textContent('[role=alert]')).toContain('the name or the password is wrong');
    await firstSignIn(tomPage, 'tech.tom', reset, 'tom chose another');

    // Disabling ends the session at once; enabling lets Tom sign in again.
    await page.goto(`${pacs.url}/admin/users`);
    await row().locator('button:has-text("Disable")').click();
    await page.waitForURL(`${pacs.url}/admin/users`);
    expect(await row().locator('.state').textContent()).toBe('disabled');
    expect((await tomPage.request.get(`${pacs.dicomweb}/studies`)).status()).toBe(401);
    await tomPage.goto(`${pacs.url}/admin/storage`);
    await submitSignIn(tomPage, 'tech.tom', 'tom chose another');
    expect(await tomPage.textContent('[role=alert]')).toContain('the name or the password is wrong');
    await row().locator('button:has-text("Enable")').click();
    await page.waitForURL(`${pacs.url}/admin/users`);
    expect(await row().locator('.state').textContent()).toBe('active');
    await submitSignIn(tomPage, 'tech.tom', 'tom chose another');
    expect((await tomPage.request.get(`${pacs.dicomweb}/studies`)).status()).toBe(200);
    await tom.close();

    // The only enabled administrator cannot disable themselves, and nothing changes.
    await page.locator('#users tr[data-login="it.admin"] button:has-text("Disable")').click();
    expect(await page.textContent('[role=alert]')).toContain('only enabled administrator');
    expect(await page.locator('#users tr[data-login="it.admin"] .state').textContent()).toBe('active');
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

  it('adds a webhook, shows its secret once, lists its deliveries, replays one and removes the webhook', async () => {
    let accept = false;
    const receiver = await startReceiver(() => (accept ? 200 : 503));
    try {
      await page.goto(`${pacs.url}/admin/storage`);
      await page.click('nav a:has-text("Webhooks")');
      expect(page.url()).toBe(`${pacs.url}/admin/webhooks`);
      // Without "allow local address" a receiver on this host is refused, saying why.
      await page.fill('input[name=url]', receiver.url);
      await page.click('button:has-text("Add webhook")');
      expect(await page.textContent('.error')).toMatch(/loopback.*allow_local/);
      await page.fill('input[name=url]', receiver.url);
      await page.uncheck('input[value="study.deleted"]');
      await page.check('input[name=allow_local]');
      await page.fill('input[name=description]', 'EMR order screen');
      await page.click('button:has-text("Add webhook")');
      const secret = (await page.textContent('#webhook-secret'))!;
      expect(secret.length).toBeGreaterThanOrEqual(32);
      expect(await page.locator('#webhooks tbody tr').allTextContents()).toEqual([expect.stringContaining('study.available')]);
      expect(await page.locator('#webhooks tbody tr').first().textContent()).not.toContain('study.deleted');

      const study = newUid();
      expect((await stow(pacs.dicomweb, syntheticSeries(1, { studyUID: study, patientID: 'ADM-HOOK', rows: 16, columns: 16 }))).status).toBe(200);
      await waitFor('a refused try', () => receiver.received.length > 0 || undefined);
      // Not reload(): the page is the answer to the form, which a reload would post again.
      const refresh = () => page.goto(`${pacs.url}/admin/webhooks`);
      const row = page.locator('#deliveries tbody tr', { hasText: study });
      await waitFor('the try on the page', async () => {
        await refresh();
        return (await row.locator('td:nth-child(7)').textContent())?.includes('503') || undefined;
      });
      expect(await row.locator('.state').textContent()).toBe('pending');
      accept = true;
      await waitFor('delivered', async () => {
        await refresh();
        return (await row.locator('.state').textContent()) === 'delivered' || undefined;
      });
      const delivered = receiver.accepted().length;
      expect(signatureIsValid(secret, receiver.accepted()[0]!.headers['x-pacs-signature'] as string, receiver.accepted()[0]!.body)).toBe(true);
      await row.locator('button:has-text("Replay")').click();
      await page.waitForURL(`${pacs.url}/admin/webhooks`);
      await waitFor('the replay', () => receiver.accepted().length > delivered || undefined);

      await page.locator('#webhooks button:has-text("Remove")').click();
      await page.waitForURL(`${pacs.url}/admin/webhooks`);
      expect(await page.locator('#webhooks tbody tr').count()).toBe(0);
    } finally {
      await receiver.stop();
    }
  });

  it('lists a deleted study in the trash with its patient and reason, restores it whole, and purges it', async () => {
    const study = newUid();
    expect((await stow(pacs.dicomweb, syntheticSeries(3, { studyUID: study, patientID: 'ADM-TRASH', patientName: 'Weiß^Grete', rows: 16, columns: 16 }))).status).toBe(200);
    const found = async () => ((await (await adminFetch(`${pacs.dicomweb}/studies?StudyInstanceUID=${study}`)).json()) as unknown[]).length;
    const remove = () => adminFetch(`${pacs.dicomweb}/studies/${study}?reason=${encodeURIComponent('wrong patient, sent again')}`, { method: 'DELETE' });
    expect((await remove()).status).toBe(200);
    expect(await found()).toBe(0);

    await page.goto(`${pacs.url}/admin/storage`);
    await page.click('nav a:has-text("Trash")');
    const row = page.locator(`#trash tr[data-study-uid="${study}"]`);
    expect(await row.textContent()).toContain('Weiß^Grete');
    expect(await row.textContent()).toContain('ADM-TRASH');
    expect(await row.locator('.reason').textContent()).toBe('wrong patient, sent again');
    await row.locator('button:has-text("Restore")').click();
    expect(await page.textContent('[role=status]')).toContain('Restored 3 instances');
    expect(await row.count()).toBe(0);
    expect(await found()).toBe(1);

    expect((await remove()).status).toBe(200);
    await page.goto(`${pacs.url}/admin/trash`);
    await row.locator('button:has-text("Purge now")').click();
    expect(await page.textContent('[role=status]')).toContain('gone for good');
    expect(await row.count()).toBe(0);
    // Purged: nothing left to restore.
    expect(((await (await adminFetch(`${pacs.url}/api/v1/trash`)).json()) as unknown[]).length).toBe(0);
    expect(await found()).toBe(0);
  });
});
