import type { MiddlewareHandler, Context } from 'hono';
import { getCookie } from 'hono/cookie';
import { decodeJwt } from 'jose';
import type { Catalog } from '../catalog/catalog.js';
import type { Env } from '../context.js';
import { Forbidden, NotFound, Unauthorized } from '../errors.js';
import type { ApiKeys } from './api-keys.js';
import type { AuditLog } from './audit.js';
import type { AuthFailures, LimitReached } from './auth-failures.js';
import type { Origins } from './origins.js';
import type { AuditEvent } from './records.js';
import { credentialLabel, permits, studyScope, type Permission, type Principal } from './principal.js';
import { readableStudies } from './readable-studies.js';
import { SESSION_COOKIE, type Sessions } from './sessions.js';
import type { SetupCode } from './setup-code.js';
import type { Users } from './users.js';
import type { ImageLinks } from './image-links.js';
import type { ViewerTokens } from './viewer-tokens.js';

export type Auth = {
  keys: ApiKeys;
  tokens: ViewerTokens;
  imageLinks: ImageLinks;
  audit: AuditLog;
  anonymousRead: boolean;
  failures: AuthFailures;
  origins: Origins;
  users: Users;
  sessions: Sessions;
  setup: SetupCode;
};

/**
 * Finds who is asking and sets `principal`; a credential that is given must be good, even on a route
 * anonymous readers could use. Without one, the caller is anonymous only where the operator allowed it,
 * and never for a page of another origin that PACS_CORS_ORIGINS does not name.
 */
export function authenticate(auth: Auth): MiddlewareHandler<Env> {
  return async (c, next) => {
    const given = credentialOf(c);
    const session = given === undefined ? getCookie(c, SESSION_COOKIE) : undefined;
    const user = session ? await auth.sessions.principalOf(session) : undefined;
    if (given !== undefined) {
      c.set('principal', await verified(c, auth, given));
    } else if (user) {
      // Set first: a change refused below is the user's browser's, and audited as theirs.
      c.set('principal', user);
      // The browser sends the cookie whichever page asks: a change must come from a page of ours (CSRF).
      if (!SAFE_METHODS.has(c.req.method) && !auth.origins.fromOwnPage(c)) {
        throw new Forbidden('a change made with a signed-in session must come from this server\'s own pages, not from another site; nothing was changed');
      }
    } else if (auth.anonymousRead) {
      const foreign = auth.origins.unlistedForeign(c);
      if (foreign !== undefined) {
        throw new Unauthorized(`reads without a credential are not granted to ${foreign}: send a credential, or have the administrator list that origin in PACS_CORS_ORIGINS`, false);
      }
      c.set('principal', { kind: 'anonymous' });
    }
    await next();
  };
}

/** The principal a credential stands for; a refusal is counted against the address and, for keys, the key's prefix. */
async function verified(c: Context<Env>, auth: Auth, { credential, inUrl }: GivenCredential): Promise<Principal> {
  // A JWS has three dot-separated parts; our API keys have no dot.
  const isToken = credential.includes('.');
  const address = c.var.client.address;
  auth.failures.check(address, credential);
  let principal: Principal;
  try {
    principal = isToken ? await auth.tokens.verify(credential) : await auth.keys.authenticate(credential);
  } catch (e) {
    if (e instanceof Unauthorized) {
      c.set('rejectedCredential', `rejected:${e.credential ?? (isToken ? claimedToken(credential) : 'key')}`);
      for (const reached of auth.failures.fail(address, credential)) auditLimit(c, auth.audit, reached);
    }
    throw e;
  }
  // A URL is kept in browser history, proxy logs and referrers: only what reads may travel in one.
  if (inUrl && principal.kind === 'key' && principal.role !== 'read') {
    c.set('rejectedCredential', `rejected:${credentialLabel(principal)}`);
    throw new Unauthorized(`an API key of the role "${principal.role}" is not taken as ?token=, where URLs are logged and kept; send it as "Authorization: Bearer <key>"`, true);
  }
  return principal;
}

/** The limit being reached is audited once a window, under the address it was reached from. */
function auditLimit(c: Context<Env>, audit: AuditLog, reached: LimitReached): void {
  const credential = reached.by === 'address' ? 'rate-limited:address' : `rate-limited:key-prefix:${reached.prefix}`;
  c.var.log.warn({ limit: reached.by, address: c.var.client.address, prefix: reached.by === 'key-prefix' ? reached.prefix : undefined }, 'failed credentials reached their limit: further ones are 429 for the rest of the minute');
  audit.record({ ...eventOf(c), credential, query: null, status: 429 });
}

/**
 * A browser opening one of our pages without a session is sent to /login and back (issue 14), unless it carries a
 * viewer token (an EMR link) or the operator allows anonymous reads; what it may then read is the DICOMweb routes' say.
 * A user still holding a one-time password replaces it first: the viewer could read nothing meanwhile.
 */
export function signInFirst(auth: Auth): MiddlewareHandler<Env> {
  return async (c, next) => {
    const browsing = c.req.method === 'GET' && (c.req.header('accept') ?? '').includes('text/html');
    if (browsing && !auth.anonymousRead && c.req.query('token') === undefined) {
      const session = getCookie(c, SESSION_COOKIE);
      const user = session ? await auth.sessions.principalOf(session) : undefined;
      if (!user) return sendToSignIn(c);
      if (user.mustChangePassword) return sendToPasswordChange(c);
    }
    await next();
  };
}

/** To /login, and back to the page asked for once signed in. */
export function sendToSignIn(c: Context<Env>): Response {
  return c.redirect(`/login?next=${backHere(c)}`, 303);
}

/** To the change of a one-time password, and back to the page asked for once changed. */
export function sendToPasswordChange(c: Context<Env>): Response {
  return c.redirect(`/account/password?next=${backHere(c)}`, 303);
}

function backHere(c: Context<Env>): string {
  const url = new URL(c.req.url);
  return encodeURIComponent(url.pathname + url.search);
}

/** A route's permission: 401 when the caller has not said who they are, 403 when they may not. */
export function allow(permission: Permission): MiddlewareHandler<Env> {
  return async (c, next) => {
    demand(c.var.principal, permission);
    await next();
  };
}

/**
 * DICOMweb reads, stores and deletes. A viewer token sees its study (with priors, its patient's studies): every
 * other study is "not found", whether it exists or not, so that a token tells nothing of what else is stored.
 */
export function dicomwebAccess(catalog: Catalog): MiddlewareHandler<Env> {
  return async (c, next) => {
    const method = c.req.method;
    demand(c.var.principal, method === 'POST' ? 'upload' : method === 'DELETE' ? 'delete' : 'read');
    const readable = await readableStudies(c.var.principal, catalog);
    const study = uidsNamedBy(c).studyUid;
    if (readable !== undefined && study !== undefined && !readable.includes(study)) throw new NotFound('no study with that UID is stored');
    c.set('readableStudies', readable);
    await next();
    // Patient data never sits in a shared cache, even when the credential came in the URL.
    if (!c.res.headers.has('Cache-Control')) c.header('Cache-Control', 'private');
  };
}

/** Records every request for patient data or for access itself, with its outcome, after it is answered. */
export function auditTrail(audit: AuditLog): MiddlewareHandler<Env> {
  return async (c, next) => {
    await next();
    if (c.req.method === 'OPTIONS' || !AUDITED.test(c.req.path)) return;
    const event = eventOf(c);
    // One event per study touched, so that filtering the trail by study finds them all.
    const scope = studyScope(c.var.principal);
    const studies = event.studyUid === null ? (c.var.auditStudyUids ?? (scope ? [scope] : [])) : [];
    if (studies.length === 0) audit.record(event);
    for (const study of studies) audit.record({ ...event, studyUid: study });
  };
}

/** The audit event of a request as answered so far; AuditLog keeps long fields short. */
function eventOf(c: Context<Env>): AuditEvent {
  const { studyUid, seriesUid, sopUid } = uidsNamedBy(c);
  const params = new URL(c.req.url).searchParams;
  // Whatever its casing, a token parameter is a secret; `?TOKEN=` is no credential here, but it may be one elsewhere.
  for (const name of [...params.keys()]) if (SECRET_PARAMETER.test(name)) params.delete(name);
  if (c.var.auditReason) params.set('reason', c.var.auditReason);
  return {
    at: Date.now(),
    credential: callerOf(c),
    ip: clientIpOf(c),
    method: c.req.method,
    path: c.req.path,
    query: params.size > 0 ? params.toString() : null,
    studyUid: studyUid ?? null,
    seriesUid: seriesUid ?? null,
    sopUid: sopUid ?? null,
    status: c.res.status,
    requestId: c.var.requestId,
  };
}

/**
 * The study, series and instance a request names, as sent (unvalidated: only compared and recorded): in the path
 * under /dicom-web or /api/v1, or in WADO-URI's studyUID, seriesUID and objectUID parameters (PS3.18 9).
 */
export function uidsNamedBy(c: Context<Env>): { studyUid?: string; seriesUid?: string; sopUid?: string } {
  if (WADO_URI.test(c.req.path)) return { studyUid: c.req.query('studyUID'), seriesUid: c.req.query('seriesUID'), sopUid: c.req.query('objectUID') };
  const [, studyUid, seriesUid, sopUid] = UIDS_IN_PATH.exec(c.req.path) ?? [];
  return { studyUid, seriesUid, sopUid };
}

/** Who asked, as the audit trail and the request log name them: never a secret. */
export function callerOf(c: Context<Env>): string {
  return c.var.rejectedCredential ?? credentialLabel(c.var.principal);
}

/** A refused token is named by the id it claims, when that looks like one of ours: unverified, but telling. */
function claimedToken(token: string): string {
  try {
    const { jti } = decodeJwt(token);
    return typeof jti === 'string' && /^[0-9a-f-]{36}$/i.test(jti) ? `token:${jti}` : 'token';
  } catch {
    return 'token';
  }
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const SECRET_PARAMETER = /^(token|access_token|api_?key|sig)$/i;
// Sign-in, sign-out and password changes too, where the sign-in pages audit them (their POSTs).
const AUDITED = /^\/(dicom-web\/|api\/|fhir\/|wado\/?$|admin(\/|$)|login$|logout$|account\/password$|setup$)/;
const WADO_URI = /^\/wado\/?$/;
const UIDS_IN_PATH = /^\/(?:dicom-web|api\/v1)\/studies\/([^/]+)(?:\/series\/([^/]+))?(?:\/instances\/([^/]+))?/;

const DOES: Record<Permission, string> = {
  read: 'read images and metadata',
  summaries: 'read study summaries',
  'viewer-links': 'ask for viewer links',
  upload: 'store instances',
  delete: 'delete',
  admin: 'manage keys, tokens, application entities and the audit trail',
};

function demand(principal: Principal | undefined, permission: Permission): void {
  if (principal && permits(principal, permission)) return;
  if (!principal || principal.kind === 'anonymous') {
    throw new Unauthorized('this route needs a credential: sign in at /login, or send an API key or a viewer token as "Authorization: Bearer …"', false);
  }
  if (principal.kind === 'user') {
    throw new Forbidden(principal.mustChangePassword ? `${principal.login} must change the one-time password first, at /account/password` : `user ${principal.login} has the roles "${principal.roles.join(', ')}", which may not ${DOES[permission]}`);
  }
  if (principal.kind === 'viewer-token') throw new Forbidden(`a viewer token is read-only and may not ${DOES[permission]}`);
  throw new Forbidden(`API key ${principal.id} has the role "${principal.role}", which may not ${DOES[permission]}`);
}

type GivenCredential = { credential: string; inUrl: boolean };

/** Bearer, Basic with the key as password (for tools that only speak Basic), or ?token= on reads. */
function credentialOf(c: Context<Env>): GivenCredential | undefined {
  const header = c.req.header('authorization');
  if (header !== undefined) {
    const [, scheme = '', value = ''] = /^\s*(\S+)\s*(.*?)\s*$/.exec(header) ?? [];
    if (/^bearer$/i.test(scheme) && value) return { credential: value, inUrl: false };
    if (/^basic$/i.test(scheme) && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const password = decoded.slice(decoded.indexOf(':') + 1);
      if (password) return { credential: password, inUrl: false };
    }
    throw new Unauthorized('the Authorization header must be "Bearer <key or token>" or "Basic" with the API key as the password', true);
  }
  if (c.req.method === 'GET' || c.req.method === 'HEAD') {
    const token = c.req.query('token');
    if (token !== undefined) {
      if (!token) throw new Unauthorized('the token parameter is empty', true);
      return { credential: token, inUrl: true };
    }
  }
  return undefined;
}

/** Where a request came from, as the audit trail and the upload log write it: the client, and the proxy it came by. */
export function clientIpOf(c: Context<Env>): string {
  const { address, via } = c.var.client;
  return via ? `${address} via ${via}` : address;
}
