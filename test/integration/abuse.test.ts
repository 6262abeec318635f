import { randomBytes, randomUUID } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { AS_ADMIN, adminFetch, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * "Anyone who can reach the port" (issue 10): what a caller without a credential, or with a guessed or borrowed one,
 * could do to the audit trail, to keys, through a browser, through forwarded headers and with downloads.
 */

const VIEWER_URL = 'https://viewer.clinic.example';
const LISTED_ORIGIN = 'https://ohif.clinic.example';
const FOREIGN_ORIGIN = 'https://evil.example';
const DICOM_JSON = { Accept: 'application/dicom+json' };
const RETRIEVE_URL = '00081190';

type Study = { studyUID: string; seriesUID: string; sopUID: string };

const bearer = (credential: string) => ({ Authorization: `Bearer ${credential}` });
/** A client behind the trusted proxy (127.0.0.1), as the proxy names it. */
const from = (address: string) => ({ 'X-Forwarded-For': address });
const randomKey = () => `pacs_${randomBytes(24).toString('base64url')}`;

/** PACS_TRUSTED_PROXIES=127.0.0.1: tests play clients of their own addresses through X-Forwarded-For. */
let proxied: RunningServer;
/** Defaults: no trusted proxy. */
let plain: RunningServer;
/** PACS_ANONYMOUS_READ=true with the default PACS_CORS_ORIGINS=*. */
let lan: RunningServer;
/** PACS_ANONYMOUS_READ=true with PACS_CORS_ORIGINS naming one origin. */
let listed: RunningServer;
let study: Study;
let lanStudy: Study;

async function store(target: RunningServer): Promise<Study> {
  const ids = { studyUID: newUid(), seriesUID: newUid(), sopUID: newUid() };
  const response = await stow(target.dicomweb, [syntheticInstance({ studyUID: ids.studyUID, seriesUID: ids.seriesUID, sopInstanceUID: ids.sopUID })]);
  expect(response.status, await response.clone().text()).toBe(200);
  return ids;
}

async function createKey(target: RunningServer, role: string): Promise<{ id: string; key: string }> {
  const response = await adminFetch(`${target.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: `${role} ${randomUUID()}`, role }) });
  expect(response.status).toBe(201);
  return response.json();
}

async function audit(target: RunningServer, query: string): Promise<any[]> {
  const response = await adminFetch(`${target.url}/api/v1/audit?${query}`);
  expect(response.status).toBe(200);
  return response.json();
}

/** `count` requests, `concurrency` at a time; their statuses in order. */
async function inBatches(count: number, concurrency: number, send: (i: number) => Promise<Response>): Promise<number[]> {
  const statuses: number[] = [];
  for (let start = 0; start < count; start += concurrency) {
    const batch = Array.from({ length: Math.min(concurrency, count - start) }, (_, j) => send(start + j).then(async (r) => (await r.arrayBuffer(), r.status)));
    statuses.push(...(await Promise.all(batch)));
  }
  return statuses;
}

/** The status of a GET sent with exactly these headers (fetch adds Sec-Fetch-Mode: cors to every request). */
function statusOf(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(url, { headers }, (response) => {
      response.resume();
      response.on('end', () => resolve(response.statusCode!));
    }).on('error', reject);
  });
}

const tally = (statuses: number[]) => statuses.reduce<Record<number, number>>((t, s) => ({ ...t, [s]: (t[s] ?? 0) + 1 }), {});

beforeAll(async () => {
  [proxied, plain, lan, listed] = await Promise.all([
    startServer({ env: { PACS_TRUSTED_PROXIES: '127.0.0.1', PACS_VIEWER_URL: VIEWER_URL } }),
    startServer(),
    startServer({ env: { PACS_ANONYMOUS_READ: 'true' } }),
    startServer({ env: { PACS_ANONYMOUS_READ: 'true', PACS_CORS_ORIGINS: LISTED_ORIGIN } }),
  ]);
  [study, lanStudy] = await Promise.all([store(proxied), store(lan)]);
});

afterAll(async () => {
  await Promise.all([proxied?.stop(), plain?.stop(), lan?.stop(), listed?.stop()]);
});

describe('the audit trail cannot be grown without a credential', () => {
  it('4,000 refused requests with a 14 KB query add at most PACS_AUDIT_REFUSED_PER_MINUTE short events, and one summary counting the rest', async () => {
    const flooded = await startServer();
    let restarted: RunningServer | undefined;
    try {
      const query = `PatientName=${'x'.repeat(14 * 1024)}`;
      const statuses = await inBatches(4000, 40, () => fetch(`${flooded.dicomweb}/studies?${query}`, { headers: DICOM_JSON }));
      expect(tally(statuses)).toEqual({ 401: 4000 });
      // The summary of a minute is written when the minute is over, or when the server stops.
      await flooded.stop();
      restarted = await startServer({ dataDir: flooded.dataDir });
      const events = await audit(restarted, 'credential=none&limit=10000');
      const summaries = events.filter((e) => e.method === 'SUMMARY');
      expect(events.length).toBeLessThanOrEqual(60 + 1);
      expect(summaries).toHaveLength(1);
      expect(summaries[0]).toMatchObject({ ip: '127.0.0.1', status: 429, query: expect.stringMatching(/^count=3940&from=/) });
      for (const e of events.filter((e) => e.method !== 'SUMMARY')) {
        expect(e.query.length).toBeLessThan(300);
        expect(e.query).toMatch(/…\[14348 characters\]$/);
      }
    } finally {
      await flooded.stop();
      await restarted?.stop();
    }
  });
});

describe('guessing credentials', () => {
  it('1,000 random keys from one address: 401 for the first 20, then 429 with Retry-After for any credential from there, audited once', async () => {
    const attacker = from('203.0.113.10');
    const statuses: number[] = [];
    let limited: Response | undefined;
    for (let i = 0; i < 1000; i++) {
      const response = await fetch(`${proxied.dicomweb}/studies`, { headers: { ...attacker, ...bearer(randomKey()) } });
      statuses.push(response.status);
      if (response.status === 429) limited ??= response;
      else await response.arrayBuffer();
    }
    expect(tally(statuses)).toEqual({ 401: 20, 429: 980 });
    expect(statuses.indexOf(429)).toBe(20);
    const retryAfter = Number(limited!.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(1);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(await limited!.json()).toEqual({ error: 'too-many-failures', detail: expect.stringMatching(/^too many failed credentials from this address in the last minute; try again in \d+ s$/) });
    // Not even the right key is checked from there until the minute is over: a guess cannot be confirmed.
    expect((await fetch(`${proxied.dicomweb}/studies`, { headers: { ...attacker, ...AS_ADMIN } })).status).toBe(429);
    expect((await fetch(`${proxied.dicomweb}/studies`, { headers: { ...from('203.0.113.11'), ...AS_ADMIN } })).status).toBe(200);
    const reached = await audit(proxied, 'credential=rate-limited:address');
    expect(reached).toEqual([expect.objectContaining({ ip: '203.0.113.10 via 127.0.0.1', status: 429, path: '/dicom-web/studies' })]);
  });

  it('guesses at one key prefix from many addresses are limited too', async () => {
    const prefix = `pacs_${randomBytes(3).toString('base64url')}`;
    const statuses: number[] = [];
    for (let i = 0; i < 40; i++) {
      const response = await fetch(`${proxied.dicomweb}/studies`, { headers: { ...from(`198.51.100.${i + 1}`), ...bearer(`${prefix}${randomBytes(20).toString('base64url')}`) } });
      statuses.push(response.status);
      if (i === 39) expect((await response.json()).detail).toMatch(/for API keys beginning like this one/);
      else await response.arrayBuffer();
    }
    expect(tally(statuses)).toEqual({ 401: 20, 429: 20 });
    expect(await audit(proxied, `credential=rate-limited:key-prefix:${prefix}`)).toHaveLength(1);
  });

  it('one bad credential sent again and again counts once, as a browser retrying an expired link does', async () => {
    const stale = randomKey();
    const statuses = await inBatches(100, 10, () => fetch(`${proxied.dicomweb}/studies`, { headers: { ...from('203.0.113.20'), ...bearer(stale) } }));
    expect(tally(statuses)).toEqual({ 401: 100 });
  });

  it('a revoked key is refused in the words of an unknown one; the audit trail names it', async () => {
    const { id, key } = await createKey(proxied, 'read');
    expect((await adminFetch(`${proxied.url}/api/v1/keys/${id}`, { method: 'DELETE' })).status).toBe(204);
    const [revoked, unknown] = await Promise.all([key, randomKey()].map((k) => fetch(`${proxied.dicomweb}/studies`, { headers: { ...from('203.0.113.30'), ...bearer(k), 'X-Request-Id': `${id}-${k === key}` } })));
    expect(revoked!.status).toBe(401);
    expect(await revoked!.json()).toEqual(await unknown!.json());
    expect(revoked!.headers.get('www-authenticate')).toBe(unknown!.headers.get('www-authenticate'));
    expect((await audit(proxied, `credential=rejected:key:${id}`)).map((e) => e.requestId)).toEqual([`${id}-true`]);
  });

  it('a guessable PACS_ADMIN_KEY stops the server at start', async () => {
    const started = await startServer({ env: { PACS_ADMIN_KEY: 'aaaaaaaaaaaaaaaaaaaaaaaa' } }).catch((e: Error) => e);
    if (!(started instanceof Error)) await started.stop();
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toMatch(/PACS_ADMIN_KEY=\(hidden\): too easy to guess/);
  });
});

describe('anonymous reads are not granted to pages of other origins', () => {
  const search = (target: RunningServer, s: Study, headers: Record<string, string> = {}) => fetch(`${target.dicomweb}/studies?StudyInstanceUID=${s.studyUID}&includefield=all`, { headers: { ...DICOM_JSON, ...headers } });

  it('with PACS_CORS_ORIGINS=*, a page of another origin reads nothing without a credential', async () => {
    const byOrigin = await search(lan, lanStudy, { Origin: FOREIGN_ORIGIN });
    expect(byOrigin.status).toBe(401);
    expect((await byOrigin.json()).detail).toMatch(/^reads without a credential are not granted to https:\/\/evil\.example: send a credential, or have the administrator list that origin in PACS_CORS_ORIGINS$/);
    // An image tag or a navigation sends no Origin, but says where it comes from.
    expect(await statusOf(`${lan.dicomweb}/studies?StudyInstanceUID=${lanStudy.studyUID}`, { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'no-cors' })).toBe(401);
    expect((await fetch(`${lan.url}/api/v1/studies/${lanStudy.studyUID}`, { headers: { Origin: 'null' } })).status).toBe(401);
  });

  it('our own origin, and clients that are not browsers, still read without a credential', async () => {
    expect((await search(lan, lanStudy, { Origin: lan.url })).status).toBe(200);
    expect((await search(lan, lanStudy, { 'Sec-Fetch-Site': 'same-origin' })).status).toBe(200);
    // A link followed from another site opens for the person who followed it; the page it was on reads nothing.
    // (fetch sends a Sec-Fetch-Mode of its own, so this one goes out by node:http, as a browser's navigation would.)
    expect(await statusOf(`${lan.dicomweb}/studies?StudyInstanceUID=${lanStudy.studyUID}`, { 'Sec-Fetch-Site': 'cross-site', 'Sec-Fetch-Mode': 'navigate' })).toBe(200);
    expect((await search(lan, lanStudy)).status).toBe(200);
  });

  it('a page of any origin that sends its own credential reads, and may see the answer', async () => {
    const response = await search(lan, lanStudy, { Origin: FOREIGN_ORIGIN, ...AS_ADMIN });
    expect(response.status).toBe(200);
    expect(response.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('a preflight from another origin is allowed only for a request that will carry its own credential', async () => {
    const preflight = (headers: string) =>
      fetch(`${lan.dicomweb}/studies`, { method: 'OPTIONS', headers: { Origin: FOREIGN_ORIGIN, 'Access-Control-Request-Method': 'GET', 'Access-Control-Request-Headers': headers } });
    expect((await preflight('if-none-match')).headers.get('access-control-allow-origin')).toBeNull();
    expect((await preflight('authorization,if-none-match')).headers.get('access-control-allow-origin')).toBe('*');
  });

  it('an origin listed by name reads without a credential, and the CORS headers say so; others do not', async () => {
    const own = await store(listed);
    const fromListed = await search(listed, own, { Origin: LISTED_ORIGIN });
    expect(fromListed.status).toBe(200);
    expect(fromListed.headers.get('access-control-allow-origin')).toBe(LISTED_ORIGIN);
    const fromForeign = await search(listed, own, { Origin: FOREIGN_ORIGIN });
    expect(fromForeign.status).toBe(401);
    expect(fromForeign.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('forwarded headers', () => {
  const retrieveUrlOf = async (target: RunningServer, headers: Record<string, string>) => {
    const s = newUid();
    const response = await stow(target.dicomweb, [syntheticInstance({ studyUID: s })], undefined, headers);
    expect(response.status).toBe(200);
    return { url: (await response.json())[RETRIEVE_URL].Value[0] as string, studyUID: s };
  };
  const FORGED = { 'X-Forwarded-Host': 'javascript://evil.example/%0a', 'X-Forwarded-Proto': 'javascript', 'X-Forwarded-Prefix': '/"><script>' };

  it('from a peer that is not a trusted proxy are ignored: a forged X-Forwarded-Host never reaches a RetrieveURL', async () => {
    const { url, studyUID } = await retrieveUrlOf(plain, { ...FORGED });
    expect(url).toBe(`${plain.dicomweb}/studies/${studyUID}`);
    const honest = await retrieveUrlOf(plain, { 'X-Forwarded-Host': 'pacs.clinic.example', 'X-Forwarded-Proto': 'https' });
    expect(honest.url).toBe(`${plain.dicomweb}/studies/${honest.studyUID}`);
  });

  it('from a trusted proxy are used when each part is a scheme, a host and a path, and ignored part by part otherwise', async () => {
    const honest = await retrieveUrlOf(proxied, { 'X-Forwarded-Host': 'pacs.clinic.example:8443', 'X-Forwarded-Proto': 'https', 'X-Forwarded-Prefix': '/pacs/' });
    expect(honest.url).toBe(`https://pacs.clinic.example:8443/pacs/dicom-web/studies/${honest.studyUID}`);
    const forged = await retrieveUrlOf(proxied, FORGED);
    expect(forged.url).toBe(`${proxied.dicomweb}/studies/${forged.studyUID}`);
  });
});

describe('tokens in URLs', () => {
  it('?token= takes viewer tokens and read keys only: admin, upload and viewer-links keys are refused there', async () => {
    const instance = `${proxied.dicomweb}/studies/${study.studyUID}/metadata`;
    const [read, upload, links] = await Promise.all(['read', 'upload', 'viewer-links'].map((role) => createKey(proxied, role)));
    expect((await fetch(`${instance}?token=${read!.key}`)).status).toBe(200);
    const link = await (await adminFetch(`${proxied.url}/api/v1/studies/${study.studyUID}/viewer-url`)).json();
    expect((await fetch(`${instance}?token=${new URL(link.viewer_url).searchParams.get('token')}`)).status).toBe(200);
    for (const key of [AS_ADMIN.Authorization.slice('Bearer '.length), upload!.key, links!.key]) {
      const response = await fetch(`${instance}?token=${encodeURIComponent(key)}`);
      expect(response.status).toBe(401);
      expect((await response.json()).detail).toMatch(/is not taken as \?token=, where URLs are logged and kept; send it as "Authorization: Bearer <key>"$/);
    }
    // In a header, the same admin key works.
    expect((await adminFetch(instance)).status).toBe(200);
  });

  it('a token parameter of any casing is kept out of the audit trail and the log', async () => {
    const link = await (await adminFetch(`${proxied.url}/api/v1/studies/${study.studyUID}/viewer-url`)).json();
    const token = new URL(link.viewer_url).searchParams.get('token')!;
    const requestId = randomUUID();
    const url = `${proxied.dicomweb}/studies/${study.studyUID}/metadata?TOKEN=${token}&Token=${token}&access_token=${token}&keep=1`;
    expect((await fetch(url, { headers: { ...AS_ADMIN, 'X-Request-Id': requestId } })).status).toBe(200);
    const [event] = (await audit(proxied, `study=${study.studyUID}`)).filter((e) => e.requestId === requestId);
    expect(event.query).toBe('keep=1');
    expect(proxied.logs.join('\n')).not.toContain(token);
  });
});

describe('downloads', () => {
  const instanceUrl = () => `${proxied.dicomweb}/studies/${study.studyUID}/series/${study.seriesUID}/instances/${study.sopUID}`;

  it('a DICOM file from WADO-RS is an attachment that is not sniffed', async () => {
    const response = await adminFetch(instanceUrl(), { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-disposition')).toBe('attachment');
  });

  it('a DICOM file from WADO-URI too', async () => {
    const response = await adminFetch(`${proxied.url}/wado?requestType=WADO&studyUID=${study.studyUID}&seriesUID=${study.seriesUID}&objectUID=${study.sopUID}&contentType=application/dicom`);
    await response.arrayBuffer();
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/dicom');
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-disposition')).toBe('attachment');
  });

  it('every other answer is not sniffed either, and metadata is no attachment', async () => {
    const metadata = await adminFetch(`${instanceUrl()}/metadata`, { headers: DICOM_JSON });
    await metadata.arrayBuffer();
    expect(metadata.headers.get('x-content-type-options')).toBe('nosniff');
    expect(metadata.headers.get('content-disposition')).toBeNull();
    const refused = await fetch(`${plain.url}/api/v1/keys`);
    expect(refused.headers.get('x-content-type-options')).toBe('nosniff');
  });
});
