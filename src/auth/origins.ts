import type { Context } from 'hono';
import type { Env } from '../context.js';

/**
 * Which web pages may use what this server grants without a credential of their own (issue 10). A page of another
 * origin in a clinic browser could otherwise read patient data in anonymous-read mode: anonymous reads go only to
 * our own origin, to clients that are not browsers, and to origins listed by name in PACS_CORS_ORIGINS (never by
 * `*`). A request carrying its own credential may come from any allowed origin: a foreign page cannot know it.
 */
export class Origins {
  private readonly listed: ReadonlySet<string>;
  private readonly anyOrigin: boolean;

  constructor(corsOrigins: readonly string[]) {
    this.anyOrigin = corsOrigins.includes('*');
    this.listed = new Set(corsOrigins.filter((o) => o !== '*').map((o) => o.replace(/\/+$/, '')));
  }

  /**
   * The other origin a browser made this request for, when it was not our own page and not listed by name: the
   * Origin header, or Sec-Fetch-Site where a browser sends no Origin (a GET from an image tag or a script).
   */
  unlistedForeign(c: Context<Env>): string | undefined {
    const origin = c.req.header('origin');
    if (origin !== undefined) {
      if (this.listed.has(origin) || ownOrigins(c).includes(origin)) return undefined;
      return origin;
    }
    // A link followed shows the answer to the person who followed it, never to the page the link was on.
    if (c.req.header('sec-fetch-mode') === 'navigate') return undefined;
    const site = c.req.header('sec-fetch-site');
    return site === 'cross-site' || site === 'same-site' ? `a page of another ${site === 'same-site' ? 'origin' : 'site'}` : undefined;
  }

  /**
   * Whether a request that changes state came from a page of our own origin (CSRF, issue 14): a browser names the page
   * in Origin, or says Sec-Fetch-Site. A request with neither was made by no browser, which sends no ambient credential.
   */
  fromOwnPage(c: Context<Env>): boolean {
    const origin = c.req.header('origin');
    if (origin !== undefined) return ownOrigins(c).includes(origin);
    const site = c.req.header('sec-fetch-site');
    return site === undefined || site === 'same-origin' || site === 'none';
  }

  /**
   * Access-Control-Allow-Origin for hono's cors(): a listed origin always; with `*`, any origin on a request that
   * carries a credential, and on every answer (a refusal is worth reading), but not on a preflight of a request
   * that would carry none, which could only ride on anonymous reads.
   */
  allowOrigin(origin: string, c: Context<Env>): string | null {
    if (this.listed.has(origin)) return origin;
    if (!this.anyOrigin) return null;
    if (c.req.method !== 'OPTIONS' || !origin) return '*';
    const asks = (c.req.header('access-control-request-headers') ?? '').toLowerCase().split(',').map((h) => h.trim());
    return asks.includes('authorization') || new URL(c.req.url).searchParams.has('token') || ownOrigins(c).includes(origin) ? '*' : null;
  }
}

/** Our own origin as this request reached us, and as configured by PACS_PUBLIC_URL. */
function ownOrigins(c: Context<Env>): string[] {
  return [c.var.publicBase, c.var.requestBase].map((base) => new URL(base).origin);
}
