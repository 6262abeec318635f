import type { Page } from 'playwright-core';
import { expect } from 'vitest';
import type { RunningServer } from '../helpers/server.js';

/** Fills and sends the form of /login, where the page already is. */
export async function submitSignIn(page: Page, login: string, password: string): Promise<void> {
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', password);
  await Promise.all([page.waitForLoadState('domcontentloaded'), page.click('button:has-text("Sign in")')]);
}

/**
 * A first sign-in where the page is (/login, perhaps with ?next=): the one-time password, then the user's own,
 * after which the browser goes where it was heading.
 */
export async function firstSignIn(page: Page, login: string, oneTime: string, own: string): Promise<void> {
  await submitSignIn(page, login, oneTime);
  expect(new URL(page.url()).pathname).toBe('/account/password');
  await page.fill('input[name=current]', oneTime);
  await page.fill('input[name=password]', own);
  await page.fill('input[name=repeat]', own);
  await Promise.all([page.waitForURL((url) => url.pathname !== '/account/password'), page.click('button:has-text("Change password")')]);
}

/** Signs out as a person does: the link, then its button. */
export async function signOut(page: Page, pacs: RunningServer): Promise<void> {
  await page.goto(`${pacs.url}/logout`);
  await Promise.all([page.waitForURL(`${pacs.url}/login`), page.click('button:has-text("Sign out")')]);
}
