import type { MiddlewareHandler, Context } from 'hono';
import { decodeJwt } from 'jose';
import type { Env } from '../context.js';
import { Forbidden, NotFound, Unauthorized } from '../errors.js';
import type { ApiKeys } from './api-keys.js';
import type { AuditLog } from './audit.js';
import { credentialLabel, permits, studyScope, type Permission, type Principal } from './principal.js';
import type { ViewerTokens } from './viewer-tokens.js';

export type Auth = { keys: ApiKeys; tokens: ViewerTokens; audit: AuditLog; anonymousRead: boolean };

/**
 * Finds who is asking and sets `principal`; a credential that is given must be good, even on a route
 * anonymous readers could use. Without one, the caller is anonymous only where the operator allowed it.
 */
export function authenticate(auth: Auth): MiddlewareHandler<Env> {
  return async (c, next) => {
    const credential = credentialOf(c);
    if (credential !== undefined) {
      // A JWS has three dot-separated parts; our API keys have no dot.
      const isToken = credential.includes('.');
      try {
        c.set('principal', isToken ? await auth.tokens.verify(credential) : await auth.keys.authenticate(credential));
      } catch (e) {
        if (e instanceof Unauthorized) c.set('rejectedCredential', `rejected:${e.credential ?? (isToken ? claimedToken(credential) : 'key')}`);
        throw e;
      }
    } else if (auth.anonymousRead) {
      c.set('principal', { kind: 'anonymous' });
    }
    await next();
  };
}

/** A route's permission: 401 when the caller has not said who they are, 403 when they may not. */
export function allow(permission: Permission): MiddlewareHandler<Env> {
  return async (c, next) => {
    demand(c.var.principal, permission);
    await next();
  };
}

/**
 * DICOMweb reads, stores and deletes. A viewer token sees one study: every other study is "not found",
 * whether it exists or not, so that a token tells nothing of what else is stored.
 */
export function dicomwebAccess(): MiddlewareHandler<Env> {
  return async (c, next) => {
    const method = c.req.method;
    demand(c.var.principal, method === 'POST' ? 'upload' : method === 'DELETE' ? 'delete' : 'read');
    const scope = studyScope(c.var.principal);
    const study = uidsNamedBy(c).studyUid;
    if (scope !== undefined && study !== undefined && study !== scope) throw new NotFound('no study with that UID is stored');
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
    const { studyUid, seriesUid, sopUid } = uidsNamedBy(c);
    const params = new URL(c.req.url).searchParams;
    params.delete('token');
    const event = {
      at: Date.now(),
      credential: callerOf(c),
      ip: clientAddress(c),
      method: c.req.method,
      path: c.req.path,
      query: params.size > 0 ? params.toString() : null,
      studyUid: studyUid ?? null,
      seriesUid: seriesUid ?? null,
      sopUid: sopUid ?? null,
      status: c.res.status,
      requestId: c.var.requestId,
    };
    // One event per study touched, so that filtering the trail by study finds them all.
    const scope = studyScope(c.var.principal);
    const studies = studyUid === undefined ? (c.var.auditStudyUids ?? (scope ? [scope] : [])) : [];
    if (studies.length === 0) audit.record(event);
    for (const study of studies) audit.record({ ...event, studyUid: study });
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

const AUDITED = /^\/(dicom-web\/|api\/|wado\/?$)/;
const WADO_URI = /^\/wado\/?$/;
const UIDS_IN_PATH = /^\/(?:dicom-web|api\/v1)\/studies\/([^/]+)(?:\/series\/([^/]+))?(?:\/instances\/([^/]+))?/;

const DOES: Record<Permission, string> = {
  read: 'read images and metadata',
  summaries: 'read study summaries',
  'viewer-links': 'ask for viewer links',
  upload: 'store instances',
  delete: 'delete',
  admin: 'manage keys, tokens and the audit trail',
};

function demand(principal: Principal | undefined, permission: Permission): void {
  if (principal && permits(principal, permission)) return;
  if (!principal || principal.kind === 'anonymous') {
    throw new Unauthorized('this route needs a credential: send an API key or a viewer token as "Authorization: Bearer …"', false);
  }
  if (principal.kind === 'viewer-token') throw new Forbidden(`a viewer token is read-only and may not ${DOES[permission]}`);
  throw new Forbidden(`API key ${principal.id} has the role "${principal.role}", which may not ${DOES[permission]}`);
}

/** Bearer, Basic with the key as password (for tools that only speak Basic), or ?token= on reads. */
function credentialOf(c: Context<Env>): string | undefined {
  const header = c.req.header('authorization');
  if (header !== undefined) {
    const [, scheme = '', value = ''] = /^\s*(\S+)\s*(.*?)\s*$/.exec(header) ?? [];
    if (/^bearer$/i.test(scheme) && value) return value;
    if (/^basic$/i.test(scheme) && value) {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const password = decoded.slice(decoded.indexOf(':') + 1);
      if (password) return password;
    }
    throw new Unauthorized('the Authorization header must be "Bearer <key or token>" or "Basic" with the API key as the password', true);
  }
  if (c.req.method === 'GET' || c.req.method === 'HEAD') {
    const token = c.req.query('token');
    if (token !== undefined) {
      if (!token) throw new Unauthorized('the token parameter is empty', true);
      return token;
    }
  }
  return undefined;
}

function clientAddress(c: Context<Env>): string | null {
  const socket = c.env?.incoming?.socket?.remoteAddress ?? null;
  const forwarded = c.req.header('x-forwarded-for')?.split(',')[0]?.trim();
  return forwarded ? `${forwarded} via ${socket}` : socket;
}
