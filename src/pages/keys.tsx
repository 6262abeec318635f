import { Hono } from 'hono';
import { newKey } from '../api/access.js';
import { ROLES } from '../auth/principal.js';
import type { ApiKeyRecord } from '../auth/records.js';
import type { Env, Services } from '../context.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout, PostButton } from './layout.js';

/** API keys: list, create (the key shown once, on the answer to the form), revoke. */
export function keysPages(services: Services) {
  const { keys } = services.auth;
  const router = new Hono<Env>();

  router.get('/keys', async (c) => c.html(<KeysPage keys={await keys.list()} />));

  router.post('/keys', async (c) => {
    const form = await c.req.parseBody();
    const days = String(form.expires_in_days ?? '').trim();
    const parsed = newKey.safeParse({ name: form.name, role: form.role, expires_in_days: days ? Number(days) : undefined });
    if (!parsed.success) {
      const problem = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      return c.html(<KeysPage keys={await keys.list()} error={`Nothing was created: ${problem}`} />, 400);
    }
    const { name, role, expires_in_days } = parsed.data;
    const made = await keys.create({ name, role, expiresAt: expires_in_days ? Date.now() + expires_in_days * 86_400_000 : undefined });
    return c.html(<KeysPage keys={await keys.list()} created={made} />, 201);
  });

  router.post('/keys/:id/revoke', async (c) => {
    const revoked = await keys.revoke(c.req.param('id'));
    if (!revoked) return c.html(<KeysPage keys={await keys.list()} error="No API key has that id; nothing was revoked." />, 404);
    return c.redirect('/admin/keys', 303);
  });

  return router;
}

function KeysPage(props: { keys: ApiKeyRecord[]; created?: { key: string; record: ApiKeyRecord }; error?: string }) {
  const day = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString().slice(0, 16).replace('T', ' '));
  return (
    <Layout title="API keys" nav={ADMIN_NAV} current="/admin/keys">
      {props.error && <p class="error">{props.error}</p>}
      {props.created && (
        <div class="notice" id="new-key">
          <p>
            Key for <b>{props.created.record.name}</b> ({props.created.record.role}). Copy it now: it is shown only this once.
          </p>
          <code id="key-value">{props.created.key}</code>
        </div>
      )}
      <form class="row" method="post" action="/admin/keys">
        <label>
          Name
          <input name="name" required maxlength={200} placeholder="who or what uses it" />
        </label>
        <label>
          Role
          <select name="role">
            {ROLES.map((role) => (
              <option value={role} selected={role === 'read'}>
                {role}
              </option>
            ))}
          </select>
        </label>
        <label>
          Expires in days
          <input name="expires_in_days" type="number" min="1" max="3650" placeholder="never" />
        </label>
        <button type="submit">Create key</button>
      </form>
      <div class="scroll">
        <table id="keys">
          <thead>
            <tr>
              <th>Id</th><th>Name</th><th>Role</th><th>Key</th><th>Created</th><th>Expires</th><th>State</th><th></th>
            </tr>
          </thead>
          <tbody>
            {props.keys.map((k) => (
              <tr data-key-id={k.id}>
                <td><code>{k.id}</code></td>
                <td>{k.name}</td>
                <td>{k.role}</td>
                <td><code>{k.hint}</code></td>
                <td>{day(k.createdAt)}</td>
                <td>{day(k.expiresAt)}</td>
                <td class="state">{k.revokedAt !== null ? `revoked ${day(k.revokedAt)}` : k.expiresAt !== null && k.expiresAt <= Date.now() ? 'expired' : 'active'}</td>
                <td>
                  {k.revokedAt === null && <PostButton action={`/admin/keys/${encodeURIComponent(k.id)}/revoke`} label="Revoke" danger />}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Layout>
  );
}
