import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import net from 'node:net';
import path from 'node:path';
import type { ServerBackend } from './backend.js';

export type RunningServer = {
  url: string;
  dicomweb: string;
  dataDir: string;
  /** Its object store and index, and the environment naming them, for a CLI run beside it (test/helpers/stored.ts looks into them). */
  backend: ServerBackend;
  process: ChildProcess;
  /** Lines the server logged, parsed where they are JSON. */
  logs: string[];
  stop(): Promise<void>;
  kill9(): Promise<void>;
};

const ROOT = path.resolve(import.meta.dirname, '../..');

/** Every test server starts with this admin key (PACS_ADMIN_KEY), unless a test sets its own. */
export const TEST_ADMIN_KEY = 'Kx7mQ2vR9pL4tW8zN3cF6hJ1bY5dG0sA+u/EeZiTnoM=';
export const AS_ADMIN = { Authorization: `Bearer ${TEST_ADMIN_KEY}` };

/** fetch as the clinic's administrator, unless the request carries its own Authorization. */
export function adminFetch(url: string | URL, init: RequestInit = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has('authorization')) headers.set('authorization', AS_ADMIN.Authorization);
  return fetch(url, { ...init, headers });
}

/**
 * Starts the real server as its own process on a random loopback port, with its own data folder, on the test
 * project's backend (test/helpers/backend.ts): a bucket and a database of its own, the same ones again for the
 * same data folder. Variables in `env` win, so a test may name its own bucket or database.
 */
export async function startServer(opts: { env?: Record<string, string>; dataDir?: string; entry?: string } = {}): Promise<RunningServer> {
  const dataDir = opts.dataDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-test-')));
  const port = await freePort();
  // Imported here, not above: the bench takes freePort from this file, outside vitest.
  const { backendEnv, serverBackend } = await import('./backend.js');
  const backend = serverBackend({ ...(await backendEnv(dataDir)), ...opts.env });
  // The source through tsx, unless a test runs a build of it (`entry`: its main.js).
  const child = spawn(process.execPath, opts.entry ? [opts.entry] : ['--import', 'tsx', path.join(ROOT, 'src/main.ts')], {
    cwd: ROOT,
    // The DICOM network service is off unless a test asks for it: parallel servers would all want port 11112.
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PACS_STORAGE_DIR: dataDir, PACS_LOG_LEVEL: 'info', PACS_ADMIN_KEY: TEST_ADMIN_KEY, PACS_DICOM_PORT: '0', ...backend.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // With PACS_TLS_CERT the server speaks HTTPS on its port (src/https.ts).
  const scheme = opts.env?.PACS_TLS_CERT ? 'https' : 'http';
  const logs: string[] = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop()!;
    logs.push(...lines);
  });
  child.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()));
  // Ready when /healthz answers, whatever the log level.
  for (const started = Date.now(); ; ) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode} before listening:\n${logs.join('\n')}`);
    if (Date.now() - started > 30_000) throw new Error(`server did not start in 30 s:\n${logs.join('\n')}`);
    const ok = await answersHealth(scheme, port);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  const url = `${scheme}://127.0.0.1:${port}`;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return {
    url,
    dicomweb: `${url}/dicom-web`,
    dataDir,
    backend,
    process: child,
    logs,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Whether /healthz answers 200; over HTTPS the certificate is not checked here, only that the server is up. */
function answersHealth(scheme: 'http' | 'https', port: number): Promise<boolean> {
  if (scheme === 'http') return fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false);
  return new Promise((resolve) => {
    https
      .get({ host: '127.0.0.1', port, path: '/healthz', rejectUnauthorized: false }, (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      })
      .on('error', () => resolve(false));
  });
}

/** A multipart/related STOW-RS body, as a modality or uploader would send it; parts are application/dicom unless typed. */
export function stowBody(parts: Array<Buffer | { contentType: string; body: Buffer }>, boundary = `b-${randomUUID()}`): { body: Buffer; contentType: string } {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    const { contentType, body } = Buffer.isBuffer(part) ? { contentType: 'application/dicom', body: part } : part;
    chunks.push(Buffer.from(`--${boundary}\r\nContent-Type: ${contentType}\r\n\r\n`), body, Buffer.from('\r\n'));
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(chunks), contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** A STOW-RS request, sent as the administrator unless `headers` carry another Authorization. */
export async function stow(dicomweb: string, files: Buffer[], studyUID?: string, headers: Record<string, string> = {}): Promise<Response> {
  const { body, contentType } = stowBody(files);
  return adminFetch(`${dicomweb}/studies${studyUID ? `/${studyUID}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json', ...headers },
    body: new Uint8Array(body),
  });
}

/** Splits a multipart/related response into its parts' bodies and headers. */
export async function readMultipartResponse(response: Response): Promise<Array<{ headers: Record<string, string>; body: Buffer }>> {
  const type = response.headers.get('content-type') ?? '';
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!boundary) throw new Error(`no boundary in ${type}`);
  const bytes = Buffer.from(await response.arrayBuffer());
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  let position = bytes.indexOf(`--${boundary}`);
  for (;;) {
    const lineEnd = bytes.indexOf('\r\n', position);
    if (bytes.subarray(position, lineEnd).toString().trim() === `--${boundary}--`) break;
    const headerEnd = bytes.indexOf('\r\n\r\n', lineEnd);
    const headers: Record<string, string> = {};
    for (const line of bytes.subarray(lineEnd + 2, headerEnd).toString().split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0) headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const next = bytes.indexOf(delimiter, headerEnd + 4);
    if (next < 0) throw new Error('multipart response ends without a closing boundary');
    parts.push({ headers, body: bytes.subarray(headerEnd + 4, next) });
    position = next + 2;
  }
  return parts;
}

/** A port nothing listens on now, on loopback. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
