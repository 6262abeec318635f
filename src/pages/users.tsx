import { Hono, type Context } from 'hono';
import type { Role } from '../auth/principal.js';
import type { UserRecord } from '../auth/user-records.js';
import { USER_ROLES, userStatus } from '../auth/users.js';
import type { Env, Services } from '../context.js';
import { HttpError } from '../errors.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout, PostButton } from './layout.js';

/** A one-time password to hand over, shown on the answer to the form that made it and never again. */
type Handover = { login: string; password: string; why: 'created' | 'reset' };

/**
 * Staff accounts: list, create, disable and enable, reset a password, change roles. The same Users service as
 * `npm run cli -- users`; a new or reset password is one-time, to be changed at the next sign-in.
 */
export function usersPages(services: Services) {
  const { users } = services.auth;
  const router = new Hono<Env>();

  const show = async (c: Context<Env>, status: 200 | 201 | 400 | 404 | 409, extra: { handover?: Handover; error?: string } = {}) =>
    c.html(<UsersPage users={await users.list()} {...extra} />, status);

  /** Runs a change; a refusal the admin can act on (bad input, unknown user, last admin) is shown on the page. */
  const change = (act: (c: Context<Env>) => Promise<Response>) => async (c: Context<Env>) => {
    try {
      return await act(c);
    } catch (e) {
      if (!(e instanceof HttpError) || e.status >= 500) throw e;
      return show(c, e.status as 400 | 404 | 409, { error: `Nothing was changed: ${e.message}.` });
    }
  };

  router.get('/users', (c) => show(c, 200));

  router.post(
    '/users',
    change(async (c) => {
      const form = await c.req.parseBody({ all: true });
      const { user, password } = await users.create({ login: String(form.login ?? '').trim(), displayName: String(form.displayName ?? ''), roles: rolesOf(form.role) });
      return show(c, 201, { handover: { login: user.login, password, why: 'created' } });
    }),
  );

  router.post(
    '/users/:login/roles',
    change(async (c) => {
      await users.setRoles(loginIn(c), rolesOf((await c.req.parseBody({ all: true })).role));
      return c.redirect('/admin/users', 303);
    }),
  );

  for (const [action, disabled] of [['disable', true], ['enable', false]] as const) {
    router.post(
      `/users/:login/${action}`,
      change(async (c) => {
        await users.setDisabled(loginIn(c), disabled);
        return c.redirect('/admin/users', 303);
      }),
    );
  }

  router.post(
    '/users/:login/reset-password',
    change(async (c) => {
      const login = loginIn(c);
      return show(c, 200, { handover: { login, password: await users.resetPassword(login), why: 'reset' } });
    }),
  );

  return router;
}

/** The login in the path: always there on the routes that ask (an empty one is "no such user"). */
function loginIn(c: Context<Env>): string {
  return c.req.param('login') ?? '';
}

/** Checkboxes named `role`: absent, one value, or several. */
function rolesOf(value: unknown): Role[] {
  return (Array.isArray(value) ? value : value === undefined ? [] : [value]).map(String) as Role[];
}

function UsersPage(props: { users: UserRecord[]; handover?: Handover; error?: string }) {
  const now = Date.now();
  const when = (ms: number | null) => (ms === null ? 'never' : new Date(ms).toISOString().slice(0, 16).replace('T', ' '));
  return (
    <Layout title="Users" nav={ADMIN_NAV} current="/admin/users">
      {props.error && <p class="error" role="alert">{props.error}</p>}
      {props.handover && (
        <div class="notice" id="handover">
          <p>
            {props.handover.why === 'created' ? 'Account' : 'New password for'} <b>{props.handover.login}</b>
            {props.handover.why === 'created' ? ' made. ' : '; their sessions ended. '}
            Give them this one-time password: it works for one sign-in at /login, where they choose their own. It is shown only this once.
          </p>
          <code id="one-time-password">{props.handover.password}</code>
        </div>
      )}
      <form class="row" method="post" action="/admin/users">
        <label>
          Login name
          <input name="login" required maxlength={64} autocomplete="off" placeholder="e.g. dr.meyer" />
        </label>
        <label>
          Display name
          <input name="displayName" maxlength={200} autocomplete="off" />
        </label>
        <RoleBoxes roles={['read']} />
        <button type="submit">Create user</button>
      </form>
      <div class="scroll">
        <table id="users" class="cards">
          <thead>
            <tr>
              <th>Login</th><th>Name</th><th>Roles</th><th>Status</th><th>Last sign-in (UTC)</th><th></th>
            </tr>
          </thead>
          <tbody>
            {props.users.map((u) => {
              const path = `/admin/users/${encodeURIComponent(u.login)}`;
              return (
                <tr data-login={u.login}>
                  <td data-label="Login"><code>{u.login}</code></td>
                  <td data-label="Name">{u.displayName}</td>
                  <td data-label="Roles">
                    <form class="row" method="post" action={`${path}/roles`}>
                      <RoleBoxes roles={u.roles} />
                      <button type="submit">Save roles</button>
                    </form>
                  </td>
                  <td data-label="Status" class="state">{userStatus(u, now)}</td>
                  <td data-label="Last sign-in">{when(u.lastSignInAt)}</td>
                  <td>
                    <PostButton row action={`${path}/${u.disabledAt === null ? 'disable' : 'enable'}`} label={u.disabledAt === null ? 'Disable' : 'Enable'} danger={u.disabledAt === null} />
                    <PostButton row action={`${path}/reset-password`} label="Reset password" />
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
      <p class="muted">
        Disabling ends the user's sessions at once. Roles apply from their next request. The same is done with <code>npm run cli -- users</code>.
      </p>
    </Layout>
  );
}

function RoleBoxes(props: { roles: readonly Role[] }) {
  return (
    <fieldset class="roles">
      <legend>Roles</legend>
      {USER_ROLES.map((role) => (
        <label>
          <input type="checkbox" name="role" value={role} checked={props.roles.includes(role)} /> {role}
        </label>
      ))}
    </fieldset>
  );
}
