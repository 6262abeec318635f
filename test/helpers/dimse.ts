import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promisify } from 'node:util';
import { expect } from 'vitest';
import { adminFetch, freePort, startServer, type RunningServer } from './server.js';

/** What the DICOM network tests share: a server with the service on, the AEs it knows, and data set comparison. */

export const run = promisify(execFile);
/** The server's AE title in these tests. */
export const AE = 'PACSLITE';

/** A server with the DICOM network service on a free port, called AE, with `env` besides. */
export async function startDicomServer(env: Record<string, string> = {}): Promise<{ server: RunningServer; dicomPort: number }> {
  const dicomPort = await freePort();
  const server = await startServer({ env: { PACS_DICOM_PORT: String(dicomPort), PACS_DICOM_AE_TITLE: AE, ...env } });
  return { server, dicomPort };
}

/** Makes an application entity known, as an administrator does (PUT /api/v1/application-entities/{ae}). */
export async function registerAe(server: RunningServer, aeTitle: string, entity: { host?: string; port?: number; store?: boolean; query?: boolean; retrieve?: boolean }): Promise<void> {
  const response = await adminFetch(`${server.url}/api/v1/application-entities/${aeTitle}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ store: false, query: false, retrieve: false, ...entity }),
  });
  expect([200, 201]).toContain(response.status);
}

/** A Part 10 file's data set, what travels over the network: the bytes after its meta information. */
export function dataSetOf(file: Buffer): Buffer {
  const metaEnd = 144 + file.readUInt32LE(140);
  return file.subarray(metaEnd);
}

export const sha256 = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
