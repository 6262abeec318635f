import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';
import { signatureIsValid, startReceiver } from '../helpers/webhook-receiver.js';
import { waitFor } from '../helpers/wait.js';

/**
 * Study-available events (issue 16), as an EMR's receiver sees them: announced after the quiet time, signed, retried
 * until accepted and then never again, announced again when more arrives, and on delete; kept across a restart.
 */

const QUIET = { PACS_STUDY_QUIET_SECONDS: '1', PACS_WEBHOOK_RETRY_SECONDS: '1' };
let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ env: QUIET });
});
afterAll(async () => {
  await server?.stop();
});

const api = (path: string, init?: RequestInit) => adminFetch(`${server.url}/api/v1${path}`, init);
const postJson = (path: string, body: unknown) => api(path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });

function study(count: number, patientID = 'EVT-1', accessionNumber = 'ACC-EVT-1') {
  const studyUID = newUid();
  const seriesUID = newUid();
  const make = (n: number) => Array.from({ length: n }, (_, i) => syntheticInstance({ studyUID, seriesUID, patientID, accessionNumber, instanceNumber: i + 1 }));
  return { studyUID, seriesUID, instances: make(count), more: (n: number) => Array.from({ length: n }, () => syntheticInstance({ studyUID, seriesUID: newUid(), patientID, accessionNumber })) };
}

async function addWebhook(url: string, extra: Record<string, unknown> = {}) {
  const response = await postJson('/webhooks', { url, allow_local: true, ...extra });
  expect(response.status, await response.clone().text()).toBe(201);
  return (await response.json()) as { id: string; secret: string; events: string[] };
}

describe('configuring webhooks', () => {
  it.each([
    ['http://169.254.169.254/latest/meta-data/', /link-local/],
    ['http://127.0.0.1:9/hook', /loopback.*allow_local/],
    ['http://localhost:9/hook', /loopback.*allow_local/],
    ['http://[::ffff:127.0.0.1]:9/hook', /loopback/],
    ['http://0.0.0.0:9/', /unspecified/],
    ['ftp://emr.clinic.example/hook', /http or https/],
    ['not a url', /absolute http/],
    ['http://user:pw@emr.clinic.example/hook', /user name or password/],
  ])('refuses %s with a 400 that says why', async (url, reason) => {
    const response = await postJson('/webhooks', { url });
    expect(response.status).toBe(400);
    expect((await response.json()).detail).toMatch(reason);
  });

  it('refuses unknown fields, naming them, and events it does not know', async () => {
    let response = await postJson('/webhooks', { url: 'http://127.0.0.1:9/', allow_local: true, expires: '90d' });
    expect(response.status).toBe(400);
    expect((await response.json()).detail).toMatch(/unknown field "expires"/);
    response = await postJson('/webhooks', { url: 'http://127.0.0.1:9/', allow_local: true, events: ['study.exploded'] });
    expect(response.status).toBe(400);
    expect((await response.json()).detail).toMatch(/^events\.0/);
    response = await api('/webhooks', { method: 'POST', body: 'url=x' });
    expect(response.status).toBe(400);
  });

  it('is for admins only', async () => {
    const response = await fetch(`${server.url}/api/v1/webhooks`);
    expect(response.status).toBe(401);
  });

  it('shows the secret once, at creation, and lists and removes webhooks', async () => {
    const created = await addWebhook('http://127.0.0.1:9/listed', { description: 'EMR test' });
    expect(created.secret.length).toBeGreaterThanOrEqual(32);
    const listed = (await (await api('/webhooks')).json()) as any[];
    const mine = listed.find((w) => w.id === created.id);
    expect(mine).toMatchObject({ url: 'http://127.0.0.1:9/listed', events: ['study.available', 'study.deleted'], allow_local: true, description: 'EMR test' });
    expect(mine.secret).toBeUndefined();
    expect((await api(`/webhooks/${created.id}`, { method: 'DELETE' })).status).toBe(204);
    expect((await api(`/webhooks/${created.id}`, { method: 'DELETE' })).status).toBe(404);
  });
});

describe('study events', () => {
  it('announces a study once it is quiet, signed; retries a receiver that fails until it accepts, and then sends it no more', async () => {
    const receiver = await startReceiver((n) => (n < 2 ? 500 : 200));
    const hook = await addWebhook(receiver.url);
    try {
      const s = study(3);
      expect((await stow(server.dicomweb, s.instances)).status).toBe(200);
      const [accepted] = await waitFor('an accepted delivery', () => (receiver.accepted().length > 0 ? receiver.accepted() : undefined));
      // Quiet a while more: nothing further comes for this event.
      await new Promise((r) => setTimeout(r, 2500));
      expect(receiver.received.map((r) => r.answered)).toEqual([500, 500, 200]);
      expect(new Set(receiver.received.map((r) => r.headers['x-pacs-delivery'])).size).toBe(1);
      expect(signatureIsValid(hook.secret, accepted!.headers['x-pacs-signature'] as string, accepted!.body)).toBe(true);
      expect(signatureIsValid('another secret of some length', accepted!.headers['x-pacs-signature'] as string, accepted!.body)).toBe(false);
      expect(accepted!.headers['x-pacs-event']).toBe('study.available');
      const event = JSON.parse(accepted!.body);
      expect(event).toMatchObject({ type: 'study.available', study: { study_uid: s.studyUID, patient_id: 'EVT-1', accession_number: 'ACC-EVT-1', series_count: 1, instance_count: 3, announced_before: false } });
      // The outbox says what happened, tries and all.
      const deliveries = (await (await api(`/webhooks/${hook.id}/deliveries`)).json()) as any[];
      expect(deliveries).toHaveLength(1);
      expect(deliveries[0]).toMatchObject({ event: 'study.available', study_uid: s.studyUID, status: 'delivered', attempts: 3, last_status: 200, last_error: null, next_attempt_at: null });
      const filtered = await api(`/webhooks/${hook.id}/deliveries?status=failed`);
      expect(await filtered.json()).toEqual([]);
      expect((await api(`/webhooks/${hook.id}/deliveries?state=failed`)).status).toBe(400);
    } finally {
      await api(`/webhooks/${hook.id}`, { method: 'DELETE' });
      await receiver.stop();
    }
  });

  it('announces a study again when more arrives, with its new counts, and its deletion', async () => {
    const receiver = await startReceiver();
    const hook = await addWebhook(receiver.url);
    try {
      const s = study(2, 'EVT-2', 'ACC-EVT-2');
      expect((await stow(server.dicomweb, s.instances)).status).toBe(200);
      await waitFor('the first announcement', () => receiver.accepted().length === 1 || undefined);
      expect((await stow(server.dicomweb, s.more(2))).status).toBe(200);
      await waitFor('the second announcement', () => receiver.accepted().length === 2 || undefined);
      const again = JSON.parse(receiver.accepted()[1]!.body);
      expect(again).toMatchObject({ type: 'study.available', study: { study_uid: s.studyUID, series_count: 3, instance_count: 4, announced_before: true } });
      const deleted = await adminFetch(`${server.dicomweb}/studies/${s.studyUID}?reason=wrong+patient`, { method: 'DELETE' });
      expect(deleted.status).toBe(200);
      await waitFor('the deletion', () => receiver.accepted().length === 3 || undefined);
      const gone = JSON.parse(receiver.accepted()[2]!.body);
      expect(gone).toMatchObject({ type: 'study.deleted', study: { study_uid: s.studyUID, patient_id: 'EVT-2', accession_number: 'ACC-EVT-2' } });
      expect(receiver.accepted()[2]!.headers['x-pacs-event']).toBe('study.deleted');
    } finally {
      await api(`/webhooks/${hook.id}`, { method: 'DELETE' });
      await receiver.stop();
    }
  });

  it('sends only the events a webhook asked for, and nothing for a study deleted before it was announced', async () => {
    const receiver = await startReceiver();
    const hook = await addWebhook(receiver.url, { events: ['study.deleted'] });
    try {
      const announced = study(1);
      expect((await stow(server.dicomweb, announced.instances)).status).toBe(200);
      const never = study(1);
      expect((await stow(server.dicomweb, never.instances)).status).toBe(200);
      expect((await adminFetch(`${server.dicomweb}/studies/${never.studyUID}?reason=sent+by+mistake`, { method: 'DELETE' })).status).toBe(200);
      await new Promise((r) => setTimeout(r, 2500));
      expect(receiver.received).toHaveLength(0);
      expect((await adminFetch(`${server.dicomweb}/studies/${announced.studyUID}?reason=test`, { method: 'DELETE' })).status).toBe(200);
      await waitFor('the deletion', () => receiver.accepted().length === 1 || undefined);
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.received.map((r) => JSON.parse(r.body).study.study_uid)).toEqual([announced.studyUID]);
    } finally {
      await api(`/webhooks/${hook.id}`, { method: 'DELETE' });
      await receiver.stop();
    }
  });

  it('does not follow a redirect, gives up on a receiver that hangs, serving on meanwhile; and replays a delivery on request', async () => {
    let mode: 'redirect' | 'hang' | 'accept' = 'redirect';
    const receiver = await startReceiver(() => (mode === 'redirect' ? 302 : mode === 'hang' ? 'hang' : 200));
    const hook = await addWebhook(receiver.url);
    try {
      expect((await stow(server.dicomweb, study(1).instances)).status).toBe(200);
      const [redirected] = await waitFor('a tried delivery', async () => {
        const list = (await (await api(`/webhooks/${hook.id}/deliveries`)).json()) as any[];
        return list[0]?.attempts > 0 ? list : undefined;
      });
      expect(redirected).toMatchObject({ status: 'pending', last_status: 302 });
      expect(redirected.last_error).toMatch(/redirects are not followed/);
      mode = 'hang';
      const tried = receiver.received.length;
      await waitFor('a hung try', () => receiver.received.length > tried || undefined);
      // While the receiver hangs, the server answers at once.
      const started = performance.now();
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      expect(performance.now() - started).toBeLessThan(1000);
      const hung = await waitFor('the hung try recorded', async () => {
        const d = (await (await api(`/webhook-deliveries/${redirected.id}`)).json()) as any;
        return /no answer within/.test(d.last_error ?? '') ? d : undefined;
      }, 20_000);
      expect(hung.status).toBe('pending');
      mode = 'accept';
      await waitFor('delivered', async () => ((await (await api(`/webhook-deliveries/${redirected.id}`)).json()).status === 'delivered' ? true : undefined), 20_000);
      const before = receiver.accepted().length;
      const replay = await api(`/webhook-deliveries/${redirected.id}/replay`, { method: 'POST' });
      expect(replay.status).toBe(200);
      expect((await replay.json()).status).toBe('pending');
      await waitFor('the replay', () => receiver.accepted().length > before || undefined);
      expect(receiver.accepted().at(-1)!.headers['x-pacs-delivery']).toBe(redirected.id);
      expect((await api('/webhook-deliveries/no-such-id/replay', { method: 'POST' })).status).toBe(404);
    } finally {
      await api(`/webhooks/${hook.id}`, { method: 'DELETE' });
      await receiver.stop();
    }
  }, 60_000);
});

describe('across a restart', () => {
  it('delivers an event whose study was stored before the server stopped', async () => {
    const receiver = await startReceiver();
    const own = await startServer({ env: { ...QUIET, PACS_STUDY_QUIET_SECONDS: '3' } });
    try {
      const response = await adminFetch(`${own.url}/api/v1/webhooks`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ url: receiver.url, allow_local: true }) });
      expect(response.status).toBe(201);
      const s = study(2);
      expect((await stow(own.dicomweb, s.instances)).status).toBe(200);
      await own.stop();
      expect(receiver.received).toHaveLength(0);
      const again = await startServer({ dataDir: own.dataDir, env: { ...QUIET, PACS_STUDY_QUIET_SECONDS: '3' } });
      try {
        await waitFor('the delivery after the restart', () => receiver.accepted().length === 1 || undefined);
        expect(JSON.parse(receiver.accepted()[0]!.body).study.study_uid).toBe(s.studyUID);
      } finally {
        await again.stop();
      }
    } finally {
      await own.stop();
      await receiver.stop();
    }
  });
});
