import { Hono, type MiddlewareHandler } from 'hono';
import type { Child } from 'hono/jsx';
import { auditTrail, authenticate, sendToPasswordChange, sendToSignIn } from '../auth/middleware.js';
import { permits, type Principal } from '../auth/principal.js';
import type { Env, Services } from '../context.js';
import { auditPage } from './audit.js';
import { uploadsPage } from './uploads.js';
import { webhooksPage } from './webhooks.js';
import { keysPages } from './keys.js';
import { Layout } from './layout.js';
import { storagePage } from './storage.js';
import { trashPage } from './trash.js';
import { usersPages } from './users.js';

/**
 * The administrator's pages, server-rendered: the same credentials and audit trail as the API, admins only. A browser
 * signs in at /login like staff do; a tool may send an admin API key (Bearer, or Basic's password).
 */
export function adminPages(services: Services) {
  const router = new Hono<Env>();
  router.use('*', basicChallenge(), auditTrail(services.auth.audit), authenticate(services.auth), adminOnly(services));
  router.get('/', (c) => c.redirect('/admin/storage', 303));
  router.route('/', storagePage(services));
  router.route('/', keysPages(services));
  router.route('/', auditPage(services));
  router.route('/', uploadsPage(services));
  router.route('/', webhooksPage(services));
  router.route('/', trashPage(services));
  router.route('/', usersPages(services));
  return router;
}

/** A tool without a credential is told it may send an admin API key as the password of HTTP Basic (any user name). */
function basicChallenge(): MiddlewareHandler<Env> {
  return async (c, next) => {
    await next();
    if (c.res.status === 401) c.res.headers.set('WWW-Authenticate', 'Basic realm="PACS-lite administration", charset="UTF-8"');
  };
}

/** Admins only; a form that changes something must come from our own page (a foreign page could post it otherwise). */
function adminOnly(services: Services): MiddlewareHandler<Env> {
  return async (c, next) => {
    const principal = c.var.principal;
    const browsing = c.req.method === 'GET' && (c.req.header('accept') ?? '').includes('text/html');
    if (!principal || principal.kind === 'anonymous') {
      if (browsing) return sendToSignIn(c);
      return c.html(<Refusal title="Sign in">Sign in at /login as an administrator, or send an admin API key.</Refusal>, 401);
    }
    if (principal.kind === 'user' && principal.mustChangePassword && browsing) return sendToPasswordChange(c);
    if (!permits(principal, 'admin')) {
      return c.html(<Refusal title="Not allowed">These pages are for administrators; {signedInAs(principal)} may not use them. Sign out to sign in as an administrator.</Refusal>, 403);
    }
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !services.auth.origins.fromOwnPage(c)) {
      return c.html(<Refusal title="Refused">A change must be made from this server's own pages, not from another site. Nothing was changed.</Refusal>, 403);
    }
    await next();
    // Pages show keys once and name patients: never kept by a browser or a proxy.
    c.header('Cache-Control', 'no-store');
  };
}

function signedInAs(principal: Principal): string {
  return principal.kind === 'user' ? `you (${principal.login}, ${principal.roles.join(', ') || 'no role yet'})` : 'your credential';
}

function Refusal(props: { title: string; children: Child }) {
  return (
    <Layout title={props.title} nav={[{ href: '/logout', label: 'Sign out' }]}>
      <p class="error">{props.children}</p>
    </Layout>
  );
}
