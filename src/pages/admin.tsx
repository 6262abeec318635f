import { Hono, type MiddlewareHandler } from 'hono';
import { auditTrail, authenticate } from '../auth/middleware.js';
import { permits } from '../auth/principal.js';
import type { Env, Services } from '../context.js';
import { auditPage } from './audit.js';
import { keysPages } from './keys.js';
import { Layout } from './layout.js';
import { storagePage } from './storage.js';

/** The administrator's pages, server-rendered: the same credentials and audit trail as the API, admins only. */
export function adminPages(services: Services) {
  const router = new Hono<Env>();
  router.use('*', basicChallenge(), auditTrail(services.auth.audit), authenticate(services.auth), adminOnly(services));
  router.get('/', (c) => c.redirect('/admin/storage', 303));
  router.route('/', storagePage(services));
  router.route('/', keysPages(services));
  router.route('/', auditPage(services));
  return router;
}

/** A browser without a credential is asked for one: an API key as the password of HTTP Basic (any user name). */
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
    if (!principal || principal.kind === 'anonymous') {
      return c.html(<Refusal title="Sign in">Sign in with an admin API key as the password (any user name).</Refusal>, 401);
    }
    if (!permits(principal, 'admin')) return c.html(<Refusal title="Not allowed">These pages are for administrators; your credential may not use them.</Refusal>, 403);
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD' && !services.auth.origins.fromOwnPage(c)) {
      return c.html(<Refusal title="Refused">A change must be made from this server's own pages, not from another site. Nothing was changed.</Refusal>, 403);
    }
    await next();
    // Pages show keys once and name patients: never kept by a browser or a proxy.
    c.header('Cache-Control', 'no-store');
  };
}

function Refusal(props: { title: string; children: string }) {
  return (
    <Layout title={props.title} nav={[]}>
      <p class="error">{props.children}</p>
    </Layout>
  );
}
