import { Hono } from 'hono';
import { createWebhook, webhookBody } from '../api/webhooks.js';
import { EVENT_TYPES, type Delivery, type Webhook } from '../catalog/catalog.js';
import type { Env, Services } from '../context.js';
import { RETRY_FOR_MS } from '../events/study-events.js';
import { HttpError } from '../errors.js';
import { ADMIN_NAV } from './admin-nav.js';
import { Layout, PostButton } from './layout.js';

const SHOWN_DELIVERIES = 100;

/** Webhooks (issue 16): add (the secret shown once), remove, and the latest deliveries with their state, replayable. */
export function webhooksPage({ catalog }: Services) {
  const router = new Hono<Env>();

  const page = async (extra: { created?: Webhook; error?: string } = {}) => (
    <WebhooksPage webhooks={await catalog.webhooks()} deliveries={await catalog.deliveries({ limit: SHOWN_DELIVERIES, offset: 0 })} {...extra} />
  );

  router.get('/webhooks', async (c) => c.html(await page()));

  router.post('/webhooks', async (c) => {
    const form = await c.req.parseBody({ all: true });
    const events = [form.events ?? []].flat().map(String);
    const parsed = webhookBody.safeParse({ url: String(form.url ?? ''), events: events.length > 0 ? events : undefined, allow_local: form.allow_local === 'on', description: String(form.description ?? '') || null });
    if (!parsed.success) {
      const problem = parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
      return c.html(await page({ error: `Nothing was added: ${problem}` }), 400);
    }
    try {
      return c.html(await page({ created: await createWebhook(catalog, parsed.data) }), 201);
    } catch (e) {
      if (e instanceof HttpError && e.status === 400) return c.html(await page({ error: `Nothing was added: ${e.message}` }), 400);
      throw e;
    }
  });

  router.post('/webhooks/:id/remove', async (c) => {
    if (!(await catalog.removeWebhook(c.req.param('id')))) return c.html(await page({ error: 'No webhook has that id; nothing was removed.' }), 404);
    return c.redirect('/admin/webhooks', 303);
  });

  router.post('/webhook-deliveries/:id/replay', async (c) => {
    const now = Date.now();
    if (!(await catalog.replayDelivery(c.req.param('id'), now, now + RETRY_FOR_MS))) return c.html(await page({ error: 'No delivery has that id; nothing was replayed.' }), 404);
    return c.redirect('/admin/webhooks', 303);
  });

  return router;
}

function WebhooksPage(props: { webhooks: Webhook[]; deliveries: Delivery[]; created?: Webhook; error?: string }) {
  const time = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString().replace('T', ' ').slice(0, 19));
  const urlOf = new Map(props.webhooks.map((w) => [w.id, w.url]));
  return (
    <Layout title="Webhooks" nav={ADMIN_NAV} current="/admin/webhooks">
      {props.error && <p class="error">{props.error}</p>}
      {props.created && (
        <div class="notice" id="new-webhook">
          <p>
            Webhook to <b>{props.created.url}</b> added. Its signing secret, for the receiver to check <code>X-PACS-Signature</code> with; copy it now, it is shown only this once:
          </p>
          <code id="webhook-secret">{props.created.secret}</code>
        </div>
      )}
      <form class="row" method="post" action="/admin/webhooks">
        <label>
          URL
          <input name="url" required maxlength={2000} placeholder="https://emr.clinic.example/pacs-events" size={40} />
        </label>
        {EVENT_TYPES.map((type) => (
          <label>
            <input type="checkbox" name="events" value={type} checked /> {type}
          </label>
        ))}
        <label title="A receiver on this host or a loopback or link-local address; refused otherwise">
          <input type="checkbox" name="allow_local" /> allow local address
        </label>
        <label>
          Description
          <input name="description" maxlength={500} />
        </label>
        <button type="submit">Add webhook</button>
      </form>
      <div class="scroll">
        <table id="webhooks">
          <thead>
            <tr><th>URL</th><th>Events</th><th>Local allowed</th><th>Description</th><th>Added (UTC)</th><th></th></tr>
          </thead>
          <tbody>
            {props.webhooks.map((w) => (
              <tr data-webhook-id={w.id}>
                <td>{w.url}</td>
                <td>{w.events.join(', ')}</td>
                <td>{w.allowLocal ? 'yes' : 'no'}</td>
                <td>{w.description}</td>
                <td>{time(w.createdAt)}</td>
                <td>
                  <PostButton action={`/admin/webhooks/${encodeURIComponent(w.id)}/remove`} label="Remove" danger />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      <h2>Latest deliveries</h2>
      <div class="scroll">
        <table id="deliveries">
          <thead>
            <tr><th>Made (UTC)</th><th>Event</th><th>Study</th><th>To</th><th>State</th><th>Tries</th><th>Last answer</th><th>Next try (UTC)</th><th></th></tr>
          </thead>
          <tbody>
            {props.deliveries.map((d) => (
              <tr data-delivery-id={d.id}>
                <td>{time(d.createdAt)}</td>
                <td>{d.eventType}</td>
                <td>{d.studyUid}</td>
                <td>{urlOf.get(d.webhookId)}</td>
                <td class="state">{d.status}</td>
                <td>{d.attempts}</td>
                <td>{d.lastStatus ?? ''} {d.lastError ?? ''}</td>
                <td>{d.status === 'pending' ? time(d.nextAttemptAt) : ''}</td>
                <td>
                  <PostButton action={`/admin/webhook-deliveries/${encodeURIComponent(d.id)}/replay`} label="Replay" />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </Layout>
  );
}
