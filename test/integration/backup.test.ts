import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { backendEnv, serverBackend } from '../helpers/backend.js';
import { cli } from '../helpers/cli.js';
import { startS3 } from '../helpers/s3.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { objectKeys, readObject, writeObject } from '../helpers/stored.js';

/**
 * `npm run cli -- backup --to <folder>` beside a running server on the project's backend, and `restore --from` into
 * an empty store once the server's data folder is gone: incremental (a run's report counts what it copied and what
 * the backup already held), resumed after kill -9, and every instance back byte for byte with its access records.
 */

type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string; sha256: string };
type Instance = { studyUID: string; seriesUID: string; sopInstanceUID: string; sha256: string };

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const INSTANCE_ACCEPT = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

let server: RunningServer;
let backupDir: string;
const servers: RunningServer[] = [];
/** Every instance the server acknowledged, with the SHA-256 of the bytes sent. */
const stored: Instance[] = manifest.map((f) => ({ studyUID: f.studyUID, seriesUID: f.seriesUID, sopInstanceUID: f.sopInstanceUID, sha256: f.sha256 }));
const access = { readKey: '', revokedKey: '' };
/** Deleted from the store after a backup held them: a restore must not bring them back. */
const deleted: Instance[] = [];

/** The counts of a backup or restore report. */
function counts(stdout: string): { copied: number; present: number; failed: number; total: number } {
  const n = (label: string) => Number(new RegExp(`^  ${label}\\s+(\\d+)`, 'm').exec(stdout)?.[1] ?? NaN);
  return { copied: n('copied'), present: n('already there'), failed: n('failed'), total: Number(/: (\d+) instance\(s\)/.exec(stdout)?.[1] ?? NaN) };
}

/** Stores a new study of `n` synthetic instances and remembers them. */
async function storeStudy(n: number): Promise<void> {
  const ids = { studyUID: newUid(), seriesUID: newUid(), rows: 128, columns: 128, patientName: 'Backup^Test' };
  const files = Array.from({ length: n }, (_, i) => {
    const sopInstanceUID = newUid();
    const bytes = syntheticInstance({ ...ids, sopInstanceUID, instanceNumber: i + 1 });
    stored.push({ studyUID: ids.studyUID, seriesUID: ids.seriesUID, sopInstanceUID, sha256: sha256(bytes) });
    return bytes;
  });
  const response = await stow(server.dicomweb, files);
  expect(response.status, await response.text()).toBe(200);
}

async function countFiles(folder: string): Promise<number> {
  const entries = await fs.readdir(folder, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).length;
}

/** A restored server: every instance byte for byte as stored, none of the deleted ones, the API keys as they were. */
async function expectServesAsBefore(restored: RunningServer) {
  for (const i of stored) {
    const response = await adminFetch(`${restored.dicomweb}/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`, { headers: INSTANCE_ACCEPT });
    expect(response.status, i.sopInstanceUID).toBe(200);
    const [part] = await readMultipartResponse(response);
    expect(sha256(part!.body), i.sopInstanceUID).toBe(i.sha256);
  }
  for (const i of deleted) expect((await adminFetch(`${restored.dicomweb}/studies/${i.studyUID}/series/${i.seriesUID}/instances/${i.sopInstanceUID}`, { headers: INSTANCE_ACCEPT })).status).toBe(404);
  expect((await fetch(`${restored.dicomweb}/studies?limit=1`, { headers: bearer(access.readKey) })).status).toBe(200);
  expect((await fetch(`${restored.dicomweb}/studies?limit=1`, { headers: bearer(access.revokedKey) })).status).toBe(401);
}

beforeAll(async () => {
  server = await startServer();
  servers.push(server);
  const response = await stow(server.dicomweb, manifest.map((f) => readFileSync(path.join(FIXTURES, f.path))));
  expect(response.status, await response.text()).toBe(200);
  const makeKey = async (name: string) => {
    const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, role: 'read' }) });
    expect(made.status).toBe(201);
    return (await made.json()) as { id: string; key: string };
  };
  access.readKey = (await makeKey('Reading room')).key;
  const old = await makeKey('Old workstation');
  expect((await adminFetch(`${server.url}/api/v1/keys/${old.id}`, { method: 'DELETE' })).status).toBe(204);
  access.revokedKey = old.key;
  backupDir = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-backup-')), 'nightly');
});

afterAll(async () => {
  for (const s of servers) await s.stop();
});

describe('backup and restore', () => {
  it('backs up every instance to a folder, each verified, with progress on stderr', { timeout: 120_000 }, async () => {
    const run = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: manifest.length, present: 0, failed: 0, total: manifest.length });
    expect(run.stdout).toMatch(/Access: 3 API key\(s\) \(3 added\)/);
    // Not a TTY here: plain progress lines.
    expect(run.stderr).toMatch(new RegExp(`^backup: \\d+/${manifest.length} instances`, 'm'));
    expect(await countFiles(path.join(backupDir, 'objects'))).toBe(manifest.length);
    expect(JSON.parse(await fs.readFile(path.join(backupDir, 'backup.json'), 'utf8'))).toMatchObject({ format: 'pacs-lite-backup/1', instances: manifest.length });
  });

  it('copies nothing the backup holds: a second run copies none, a run after one more study copies only it', { timeout: 120_000 }, async () => {
    const again = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(counts(again.stdout)).toEqual({ copied: 0, present: manifest.length, failed: 0, total: manifest.length });

    await storeStudy(3);
    const after = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(after.code, after.stdout + after.stderr).toBe(0);
    expect(counts(after.stdout)).toEqual({ copied: 3, present: manifest.length, failed: 0, total: manifest.length + 3 });
    expect(await countFiles(path.join(backupDir, 'objects'))).toBe(manifest.length + 3);
  });

  it('refuses an object whose bytes no longer match its SHA-256: reported, not copied, copied once it is right again', { timeout: 120_000 }, async () => {
    await storeStudy(2);
    const damaged = stored.at(-1)!;
    const key = (await objectKeys(server, `studies/${damaged.studyUID}/series/${damaged.seriesUID}/instances/${damaged.sopInstanceUID}_`))[0]!;
    const original = await readObject(server, key);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 10]! ^= 0x01;
    await writeObject(server, key, flipped);
    try {
      const run = await cli(['backup', '--to', backupDir], server.dataDir);
      expect(run.code).toBe(1);
      expect(counts(run.stdout)).toMatchObject({ copied: 1, failed: 1, total: stored.length });
      expect(run.stdout).toContain(`DAMAGED  ${key}: the source object is damaged`);
      expect(existsSync(path.join(backupDir, 'objects', key))).toBe(false);
    } finally {
      await writeObject(server, key, original);
    }
    const again = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(counts(again.stdout)).toEqual({ copied: 1, present: stored.length - 1, failed: 0, total: stored.length });
    expect(sha256(await fs.readFile(path.join(backupDir, 'objects', key)))).toBe(damaged.sha256);
  });

  it('resumes after kill -9: the second run skips what the first completed and copies the rest', { timeout: 180_000 }, async () => {
    const before = stored.length;
    for (let i = 0; i < 6; i++) await storeStudy(50);
    const env = { ...process.env, PACS_STORAGE_DIR: server.dataDir, ...(await backendEnv(server.dataDir)) };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'backup', '--to', backupDir, '--parallel', '2'], { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    // Killed once some of the new objects are in the backup, and well before all are.
    let atKill = 0;
    for (let i = 0; i < 3000 && child.exitCode === null; i++) {
      atKill = await countFiles(path.join(backupDir, 'objects'));
      if (atKill >= before + 20) {
        child.kill('SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await exited).toBe('SIGKILL');
    expect(stdout).not.toMatch(/^Done/m);
    expect(atKill).toBeLessThan(stored.length);

    const rerun = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(rerun.code, rerun.stdout + rerun.stderr).toBe(0);
    const c = counts(rerun.stdout);
    expect(c.total).toBe(stored.length);
    expect(c.failed).toBe(0);
    // What the killed run completed (at least the objects seen before the kill, less those whose index commit it missed) is skipped.
    expect(c.present).toBeGreaterThan(before);
    expect(c.copied).toBeGreaterThan(0);
    expect(c.copied + c.present).toBe(stored.length);
    expect(await countFiles(path.join(backupDir, 'objects'))).toBe(stored.length);
  });

  it('removes from the backup a study deleted from the store, so that a restore does not bring it back', { timeout: 120_000 }, async () => {
    const study = stored[manifest.length]!.studyUID;
    expect((await adminFetch(`${server.dicomweb}/studies/${study}?reason=lost+before+the+restore`, { method: 'DELETE' })).status).toBeLessThan(300);
    deleted.push(...stored.filter((i) => i.studyUID === study));
    stored.splice(0, stored.length, ...stored.filter((i) => i.studyUID !== study));
    const run = await cli(['backup', '--to', backupDir], server.dataDir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: 0, present: stored.length, failed: 0, total: stored.length });
    expect(run.stdout).toContain(`; ${deleted.length} deleted from the store since were removed from it`);
    expect(await countFiles(path.join(backupDir, 'objects'))).toBe(stored.length);
  });

  it('backs up to an S3 bucket, each object put with its SHA-256, and restores from the bucket alone', { timeout: 240_000 }, async () => {
    const s3 = await startS3();
    try {
      const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-bucket-backup-'));
      const local = path.join(folder, 'index');
      const envFile = path.join(folder, 'backup.env');
      const vars = { ...s3.env('pacs-offsite'), PACS_STORAGE_DIR: local };
      await fs.writeFile(envFile, Object.entries(vars).map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 });

      const run = await cli(['backup', '--to', envFile], server.dataDir);
      expect(run.code, run.stdout + run.stderr).toBe(0);
      expect(counts(run.stdout)).toEqual({ copied: stored.length, present: 0, failed: 0, total: stored.length });
      const puts = s3.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/pacs-offsite/studies/'));
      expect(puts).toHaveLength(stored.length);
      for (const put of puts) expect(put.headers['x-amz-checksum-sha256']).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      const again = await cli(['backup', '--to', envFile], server.dataDir);
      expect(counts(again.stdout)).toEqual({ copied: 0, present: stored.length, failed: 0, total: stored.length });

      // The backup's own folder is lost with the disk: the bucket holds its index too.
      await fs.rm(local, { recursive: true, force: true });
      const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-restored-'));
      const restore = await cli(['restore', '--from', envFile], dataDir);
      expect(restore.code, restore.stdout + restore.stderr).toBe(0);
      expect(restore.stdout).toContain('Taken from the bucket');
      expect(counts(restore.stdout)).toEqual({ copied: stored.length, present: 0, failed: 0, total: stored.length });
      const restored = await startServer({ dataDir });
      servers.push(restored);
      await expectServesAsBefore(restored);
      await restored.stop();
    } finally {
      await s3.stop();
    }
  });

  it('refuses to restore into a store that is not empty, and says so', { timeout: 60_000 }, async () => {
    const run = await cli(['restore', '--from', backupDir], server.dataDir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/Not restoring: the target is not empty \(.* indexes \d+ instance\(s\)\)/);
  });

  it('restores into an empty store once the data folder is lost, going on after kill -9: every instance byte for byte, keys as they were', { timeout: 240_000 }, async () => {
    await server.stop();
    await fs.rm(server.dataDir, { recursive: true, force: true });
    // On S3 or Postgres projects a new folder is also a new, empty bucket and database.
    const dataDir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-restored-'));
    // A restore killed part way leaves a store that is not empty, and is still let go on.
    const env = { ...process.env, PACS_STORAGE_DIR: dataDir, ...(await backendEnv(dataDir)) };
    const target = { dataDir, backend: serverBackend(env) };
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'restore', '--from', backupDir, '--parallel', '2'], { cwd: ROOT, env, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    for (let i = 0; i < 3000 && child.exitCode === null; i++) {
      // Until the restore has made it, the bucket is not there to list.
      if ((await objectKeys(target, 'studies/').catch(() => [])).length >= 20) {
        child.kill('SIGKILL');
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(await exited).toBe('SIGKILL');
    expect(existsSync(path.join(dataDir, 'restore-in-progress'))).toBe(true);

    const run = await cli(['restore', '--from', backupDir], dataDir);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('Going on with the restore a previous run began');
    const c = counts(run.stdout);
    expect(c).toMatchObject({ failed: 0, total: stored.length });
    expect(c.present).toBeGreaterThan(0);
    expect(c.copied + c.present).toBe(stored.length);
    expect(existsSync(path.join(dataDir, 'restore-in-progress'))).toBe(false);

    const restored = await startServer({ dataDir });
    servers.push(restored);
    await expectServesAsBefore(restored);
  });
});
