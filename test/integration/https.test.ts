import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { makeCertificate } from '../helpers/certificate.js';
import { AS_ADMIN, freePort, startServer, stowBody, type RunningServer } from '../helpers/server.js';

type Answer = { status: number; headers: http.IncomingHttpHeaders; body: string };

/** A request that trusts only the test's own certificate: a server presenting anything else fails it. */
function call(url: string, ca: Buffer | undefined, init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Answer> {
  const client = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = client.request(url, { method: init.method ?? 'GET', headers: init.headers, ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(init.body);
  });
}

describe('HTTPS served by the server itself', () => {
  let server: RunningServer;
  let ca: Buffer;
  let redirectPort: number;
  let dir: string;

  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-tls-'));
    const { cert, key } = makeCertificate(dir);
    ca = await fs.readFile(cert);
    redirectPort = await freePort();
    server = await startServer({ env: { PACS_TLS_CERT: cert, PACS_TLS_KEY: key, PACS_HTTP_REDIRECT_PORT: String(redirectPort) } });
  });
  afterAll(async () => {
    await server?.stop();
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('stores and finds a study over HTTPS, hands out https URLs and tells browsers to keep to HTTPS', async () => {
    expect(server.url).toMatch(/^https:/);
    const { body, contentType } = stowBody([syntheticInstance({ studyUID: '1.2.3.44.1', seriesUID: '1.2.3.44.1.1' })]);
    const stored = await call(`${server.dicomweb}/studies`, ca, { method: 'POST', headers: { ...AS_ADMIN, 'Content-Type': contentType, Accept: 'application/dicom+json' }, body });
    expect(stored.status).toBe(200);
    const found = await call(`${server.dicomweb}/studies?StudyInstanceUID=1.2.3.44.1`, ca, { headers: AS_ADMIN });
    expect(found.status).toBe(200);
    expect(found.headers['strict-transport-security']).toBe('max-age=31536000');
    expect(JSON.parse(found.body)[0]['00081190'].Value[0]).toBe(`${server.dicomweb}/studies/1.2.3.44.1`);
    const health = await call(`${server.url}/healthz`, ca);
    expect(health.status).toBe(200);
    expect(health.headers['strict-transport-security']).toBe('max-age=31536000');
  });

  it('speaks no plain HTTP on its HTTPS port', async () => {
    const plain = call(server.url.replace('https:', 'http:') + '/healthz', undefined).then((a) => a.status, () => 'failed');
    expect(await plain).not.toBe(200);
  });

  it('redirects plain HTTP on the second port to the same path over HTTPS', async () => {
    const port = new URL(server.url).port;
    for (const method of ['GET', 'POST']) {
      const answer = await call(`http://127.0.0.1:${redirectPort}/dicom-web/studies?PatientID=7`, undefined, { method });
      expect(answer.status).toBe(308);
      expect(answer.headers.location).toBe(`https://127.0.0.1:${port}/dicom-web/studies?PatientID=7`);
    }
  });

  it('refuses, not redirects, a key or token sent over plain HTTP', async () => {
    for (const request of [{ path: '/dicom-web/studies', headers: AS_ADMIN }, { path: '/dicom-web/studies?token=abc.def.ghi', headers: {} }]) {
      const answer = await call(`http://127.0.0.1:${redirectPort}${request.path}`, undefined, { headers: request.headers });
      expect(answer.status).toBe(403);
      expect(JSON.parse(answer.body)).toMatchObject({ error: 'https-required' });
      expect(answer.headers.location).toBeUndefined();
    }
  });

  it('refuses to start with half a TLS setting, or with an http:// public URL beside it', () => {
    expect(() => loadConfig({ PACS_TLS_CERT: '/etc/cert.pem' })).toThrow(ConfigError);
    expect(() => loadConfig({ PACS_HTTP_REDIRECT_PORT: '8081' })).toThrow(ConfigError);
    expect(() => loadConfig({ PACS_TLS_CERT: 'c.pem', PACS_TLS_KEY: 'k.pem', PACS_PUBLIC_URL: 'http://pacs.clinic.lan' })).toThrow(/https:\/\//);
    expect(loadConfig({ PACS_TLS_CERT: 'c.pem', PACS_TLS_KEY: 'k.pem' }).tls?.certFile).toBe(path.resolve('c.pem'));
  });
});
