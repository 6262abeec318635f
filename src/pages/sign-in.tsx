import { Hono, type Context } from 'hono';
import type { Child } from 'hono/jsx';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { auditTrail } from '../auth/middleware.js';
import { SESSION_COOKIE, userPrincipal } from '../auth/sessions.js';
import { SignInRefused, MIN_PASSWORD_LENGTH } from '../auth/users.js';
import type { UserRecord } from '../auth/user-records.js';
import type { Env, Services } from '../context.js';
import { HttpError } from '../errors.js';
import { Layout } from './layout.js';

const SIGN_IN_PAGES = ['/login', '/logout', '/account/password', '/setup'];

/**
 * Signing in and out, changing one's password, and the first admin's setup link (issue 14): server-rendered forms,
 * whose posts must come from our own pages (a foreign page could otherwise sign a browser in as someone else).
 */
export function signInPages(services: Services) {
  const { users, sessions, setup, origins } = services.auth;
  const router = new Hono<Env>();

  // Every sign-in, sign-out, password change and setup is audited, refused ones (another site's too) included.
  // Mounted at the root: the middleware names its own pages, or it would also run for OHIF's files after it.
  for (const path of SIGN_IN_PAGES) router.post(path, auditTrail(services.auth.audit));
  for (const path of SIGN_IN_PAGES) router.use(path, async (c, next) => {
    if (c.req.method === 'POST' && !origins.fromOwnPage(c)) return page(c, 403, 'Refused', <p class="error">This form must be sent from this server's own page, not from another site.</p>);
    await next();
    c.header('Cache-Control', 'no-store');
  });

  router.get('/login', (c) => page(c, 200, 'Sign in', <SignInForm next={safeNext(c.req.query('next'))} />));

  router.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const next = safeNext(String(form.next ?? ''));
    const login = String(form.login ?? '');
    try {
      const user = await users.signIn(login, String(form.password ?? ''), c.var.client.address);
      c.set('principal', userPrincipal(user));
      await startSession(c, user);
      return c.redirect(user.mustChangePassword ? `/account/password?next=${encodeURIComponent(next)}` : next, 303);
    } catch (e) {
      if (!(e instanceof SignInRefused)) throw e;
      c.set('rejectedCredential', `rejected:user:${login}`);
      return page(c, e.status as 401 | 429, 'Sign in', <SignInForm next={next} error={e.message} login={login} />);
    }
  });

  // A link (from the administrator's pages, or typed after using the viewer) shows a button: signing out is a POST.
  router.get('/logout', (c) =>
    page(c, 200, 'Sign out', (
      <form method="post" action="/logout" class="row">
        <button type="submit">Sign out</button>
      </form>
    )),
  );

  router.post('/logout', async (c) => {
    const id = getCookie(c, SESSION_COOKIE);
    const user = id ? await sessions.principalOf(id) : undefined;
    if (user) c.set('principal', user);
    if (id) await sessions.end(id);
    deleteCookie(c, SESSION_COOKIE, { path: '/' });
    return c.redirect('/login', 303);
  });

  router.get('/account/password', async (c) => {
    const user = await signedIn(c);
    if (!user) return c.redirect(`/login?next=${encodeURIComponent('/account/password')}`, 303);
    return page(c, 200, 'Change password', <PasswordForm login={user.login} next={safeNext(c.req.query('next'))} mustChange={user.mustChangePassword} />);
  });

  router.post('/account/password', async (c) => {
    const user = await signedIn(c);
    if (!user) return c.redirect('/login', 303);
    c.set('principal', user);
    const form = await c.req.parseBody();
    const next = safeNext(String(form.next ?? ''));
    if (form.password !== form.repeat) {
      return page(c, 400, 'Change password', <PasswordForm login={user.login} next={next} mustChange={user.mustChangePassword} error="The two new passwords differ." />);
    }
    try {
      const changed = await users.changePassword(user.login, String(form.current ?? ''), String(form.password ?? ''), c.var.client.address);
      // Changing the password ended every session, this one too: a new one goes on.
      await startSession(c, changed);
      return c.redirect(next, 303);
    } catch (e) {
      if (!(e instanceof HttpError) || e.status >= 500) throw e;
      return page(c, e.status as 400, 'Change password', <PasswordForm login={user.login} next={next} mustChange={user.mustChangePassword} error={e.message} />);
    }
  });

  router.get('/setup', async (c) => {
    const code = c.req.query('code');
    if (!setup.valid(code) || (await users.count()) > 0) return setupGone(c);
    return page(c, 200, 'Make the first administrator', <SetupForm code={code!} />);
  });

  router.post('/setup', async (c) => {
    const form = await c.req.parseBody();
    const code = String(form.code ?? '');
    if (!setup.valid(code) || (await users.count()) > 0) return setupGone(c);
    if (form.password !== form.repeat) return page(c, 400, 'Make the first administrator', <SetupForm code={code} error="The two passwords differ." />);
    try {
      const { user } = await users.create({ login: String(form.login ?? ''), displayName: String(form.displayName ?? ''), roles: ['admin', 'read', 'upload'], password: String(form.password ?? '') });
      setup.consume();
      c.set('principal', userPrincipal(user));
      await startSession(c, user);
      return c.redirect('/', 303);
    } catch (e) {
      if (!(e instanceof HttpError) || e.status >= 500) throw e;
      return page(c, e.status as 400, 'Make the first administrator', <SetupForm code={code} error={e.message} />);
    }
  });

  async function signedIn(c: Context<Env>) {
    const id = getCookie(c, SESSION_COOKIE);
    return id ? sessions.principalOf(id) : undefined;
  }

  async function startSession(c: Context<Env>, user: UserRecord) {
    const id = await sessions.start(user);
    const { maxAge } = sessions.settings;
    setCookie(c, SESSION_COOKIE, id, {
      path: '/',
      httpOnly: true,
      sameSite: 'Lax',
      // As the request reached us, or behind a trusted proxy as the proxy says (dicomweb/urls.ts requestBase).
      secure: c.var.requestBase.startsWith('https:'),
      maxAge: Number.isFinite(maxAge) ? Math.floor(maxAge / 1000) : undefined,
    });
  }

  return router;
}

/** Where to go after signing in: a path of ours only, never another site (`//evil.example`). */
function safeNext(next: string | undefined): string {
  return next && /^\/(?![/\\])/.test(next) ? next : '/';
}

function page(c: Context<Env>, status: 200 | 400 | 401 | 403 | 410 | 429, title: string, body: Child) {
  return c.html(
    <Layout title={title} nav={[]}>
      {body}
    </Layout>,
    status,
  );
}

function setupGone(c: Context<Env>) {
  return page(c, 410, 'Setup link used or expired', <p class="error">This setup link was used, has expired, or the server has users already. Sign in at /login, or make an admin with `npm run cli -- users create --role admin --name …`.</p>);
}

function SignInForm(props: { next: string; error?: string; login?: string }) {
  return (
    <form method="post" action="/login" class="row">
      {props.error && <p class="error" role="alert" style="flex-basis:100%">{props.error}</p>}
      <input type="hidden" name="next" value={props.next} />
      <label>
        Name
        <input name="login" autocomplete="username" required autofocus value={props.login ?? ''} />
      </label>
      <label>
        Password
        <input name="password" type="password" autocomplete="current-password" required />
      </label>
      <button type="submit">Sign in</button>
    </form>
  );
}

function PasswordForm(props: { login: string; next: string; mustChange: boolean; error?: string }) {
  return (
    <form method="post" action="/account/password" class="row">
      {props.mustChange && <p class="notice" style="flex-basis:100%">The password you were given works once: choose your own to go on.</p>}
      {props.error && <p class="error" role="alert" style="flex-basis:100%">{props.error}</p>}
      <input type="hidden" name="next" value={props.next} />
      <input type="hidden" name="login" autocomplete="username" value={props.login} />
      <label>
        Current password
        <input name="current" type="password" autocomplete="current-password" required />
      </label>
      <label>
        New password (at least {MIN_PASSWORD_LENGTH} characters)
        <input name="password" type="password" autocomplete="new-password" minlength={MIN_PASSWORD_LENGTH} required />
      </label>
      <label>
        New password again
        <input name="repeat" type="password" autocomplete="new-password" required />
      </label>
      <button type="submit">Change password</button>
    </form>
  );
}

function SetupForm(props: { code: string; error?: string }) {
  return (
    <form method="post" action="/setup" class="row">
      {props.error && <p class="error" role="alert" style="flex-basis:100%">{props.error}</p>}
      <input type="hidden" name="code" value={props.code} />
      <label>
        Login name
        <input name="login" autocomplete="username" required />
      </label>
      <label>
        Display name
        <input name="displayName" />
      </label>
      <label>
        Password (at least {MIN_PASSWORD_LENGTH} characters)
        <input name="password" type="password" autocomplete="new-password" minlength={MIN_PASSWORD_LENGTH} required />
      </label>
      <label>
        Password again
        <input name="repeat" type="password" autocomplete="new-password" required />
      </label>
      <button type="submit">Make administrator</button>
    </form>
  );
}
