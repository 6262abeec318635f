import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { decodeJwt } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticSeries } from '../fixtures/synthetic.js';
import { startPostgres, type TestPostgres } from '../helpers/postgres.js';
import { startS3, type RunningS3 } from '../helpers/s3.js';
import { postForm, signedInUser } from '../helpers/staff.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * `npm run cli -- migrate --to-env <file>`: a clinic's store copied from files + SQLite to S3 (s3rver) + Postgres
 * (embedded) while its server runs, served the same from there, resumed after kill -9, refusing damaged objects,
 * and moved back again.
 */

type Fixture = { path: string; studyUID: string; seriesUID: string; sopInstanceUID: string; sha256: string };

const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const manifest: Fixture[] = JSON.parse(readFileSync(path.join(FIXTURES, 'manifest.json'), 'utf8'));
const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
/** How an instance's object keys begin (storage/keys.ts): each write has a key of its own, its version after this. */
const keyStart = (f: Fixture) => `studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}_`;
const INSTANCE_ACCEPT = { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' };
const SYNTHETIC = 400;
/** Settings that keep a server on files + SQLite whatever the environment of the test run says. */
const FILES_AND_SQLITE = { PACS_S3_BUCKET: '', PACS_DATABASE_URL: '' };

let s3: RunningS3;
let postgres: TestPostgres;
let source: RunningServer;
const servers: RunningServer[] = [];
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** Credentials made on the source, to be found working (or refused) on every target. */
const access = {
  readKey: { id: '', key: '' },
  revokedKey: '',
  /** Revoked on the source after the first copy: a second run carries the revocation over. */
  laptopKey: { id: '', key: '' },
  link: '',
  revokedLink: '',
  linkStudy: manifest[0]!.studyUID,
  /** A member of staff's password, and a modality known to the DICOM service: both must work on every copy. */
  staffPassword: '',
};
const STAFF_LOGIN = 'radiologist';
const MODALITY_AE = 'CT_ROOM_1';
/** A receiver the EMR runs on the clinic's LAN (not listening: only the configuration is carried). */
const WEBHOOK = { url: 'http://10.20.30.40:8443/pacs-events', events: ['study.available'], description: 'EMR' };
const MODALITY = { host: '10.1.2.3', port: 104, store: true, query: false, retrieve: false, description: 'the CT' };
/** The source's answers before any copy, that every target must give alike. */
let sourceAnswers: Record<string, unknown>;
let sourceAudit: unknown;

/** The command line as an operator runs it: only the given settings, none inherited from the test run. */
function cliEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PACS_') && !k.startsWith('AWS_')));
  return { ...inherited, ...env };
}

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env: cliEnv(env), maxBuffer: 64 * 1024 * 1024 }, (error, stdout, stderr) =>
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

async function envFile(vars: Record<string, string>): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-env-'));
  const file = path.join(dir, 'target.env');
  const quoted = Object.entries(vars).map(([k, v]) => `${k}=${/[\s#"']/.test(v) ? JSON.stringify(v) : v}`);
  await fs.writeFile(file, `# the store to move to\n${quoted.join('\n')}\n`, { mode: 0o600 });
  return file;
}

/** The counts of a migrate report. */
function counts(stdout: string): { copied: number; present: number; failed: number; total: number } {
  const n = (label: string) => Number(new RegExp(`^  ${label}\\s+(\\d+)`, 'm').exec(stdout)?.[1] ?? NaN);
  return { copied: n('copied'), present: n('already there'), failed: n('failed'), total: Number(/: (\d+) instance\(s\)/.exec(stdout)?.[1] ?? NaN) };
}

/** Every QIDO level, matching and the stored metadata, as a server answers them; its own address taken out. */
async function answers(server: RunningServer): Promise<Record<string, unknown>> {
  const studies = [...new Set(manifest.map((f) => f.studyUID))];
  const paths = [
    '/studies?limit=1000&includefield=all',
    '/series?limit=1000&includefield=all',
    '/instances?limit=1000&includefield=all',
    '/studies?PatientName=*a*',
    '/studies?ModalitiesInStudy=CT',
    '/studies?StudyDate=19000101-20991231&limit=5&offset=2',
    ...studies.flatMap((s) => [`/studies/${s}/series`, `/studies/${s}/instances?includefield=all`, `/studies/${s}/metadata`]),
  ];
  const result: Record<string, unknown> = {};
  for (const p of paths) {
    const response = await adminFetch(`${server.dicomweb}${p}`);
    expect(response.status, p).toBe(200);
    result[p] = JSON.parse((await response.text()).replaceAll(server.url, 'http://pacs'));
  }
  return result;
}

async function auditOf(server: RunningServer, credential: string): Promise<unknown> {
  const response = await adminFetch(`${server.url}/api/v1/audit?credential=${credential}&limit=10000`);
  expect(response.status).toBe(200);
  return response.json();
}

/** What a copy must serve as the source did: the same answers, the same bytes, the same credentials and audit trail. */
async function expectServesAsSource(server: RunningServer) {
  // Staff sign in with the password they had; the modality is known with its address and rights.
  expect((await postForm(`${server.url}/login`, { login: STAFF_LOGIN, password: access.staffPassword })).status).toBe(303);
  expect(await (await adminFetch(`${server.url}/api/v1/application-entities/${MODALITY_AE}`)).json()).toMatchObject({ ae_title: MODALITY_AE, ...MODALITY });
  expect(await (await adminFetch(`${server.url}/api/v1/webhooks`)).json()).toEqual([expect.objectContaining(WEBHOOK)]);
  // The copy holds the source's trail (a copy of a copy holds more: the events of its own server).
  expect(await auditOf(server, `key:${access.readKey.id}`)).toEqual(expect.arrayContaining(sourceAudit as unknown[]));
  expect(await answers(server)).toEqual(sourceAnswers);
  for (const f of manifest) {
    const response = await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`, { headers: INSTANCE_ACCEPT });
    expect(response.status, f.path).toBe(200);
    const [part] = await readMultipartResponse(response);
    expect(sha256(part!.body), f.path).toBe(f.sha256);
  }
  const asReader = await fetch(`${server.dicomweb}/studies?limit=1`, { headers: bearer(access.readKey.key) });
  expect(asReader.status).toBe(200);
  expect((await fetch(`${server.dicomweb}/studies?limit=1`, { headers: bearer(access.revokedKey) })).status).toBe(401);
  // A viewer link the source signed opens its study here; the one revoked there is refused here too.
  const linked = await fetch(`${server.dicomweb}/studies/${access.linkStudy}/series`, { headers: bearer(access.link) });
  expect(linked.status).toBe(200);
  expect((await fetch(`${server.dicomweb}/studies/${access.linkStudy}/series`, { headers: bearer(access.revokedLink) })).status).toBe(401);
}

async function expectVerifies(env: Record<string, string>, instances: number) {
  const verify = await cli(['verify'], env);
  expect(verify.stdout).toContain(`${instances} indexed object(s) checked, 0 unindexed object(s), 0 problem(s)`);
  expect(verify.code).toBe(0);
}

async function tempDir(prefix: string): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), prefix));
}

beforeAll(async () => {
  [s3, postgres] = await Promise.all([startS3(), startPostgres()]);
  source = await startServer({ env: { ...FILES_AND_SQLITE, PACS_VIEWER_URL: 'https://viewer.example' } });
  servers.push(source);
  const stored = await stow(source.dicomweb, manifest.map((f) => readFileSync(path.join(FIXTURES, f.path))));
  expect(stored.status, await stored.text()).toBe(200);

  const makeKey = async (name: string, role: string) => {
    const response = await adminFetch(`${source.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name, role }) });
    expect(response.status).toBe(201);
    return (await response.json()) as { id: string; key: string };
  };
  const reader = await makeKey('Reading room', 'read');
  access.readKey = { id: reader.id, key: reader.key };
  const old = await makeKey('Old workstation', 'read');
  expect((await adminFetch(`${source.url}/api/v1/keys/${old.id}`, { method: 'DELETE' })).status).toBe(204);
  access.revokedKey = old.key;
  const laptop = await makeKey('Laptop', 'read');
  access.laptopKey = { id: laptop.id, key: laptop.key };
  const emr = await makeKey('EMR', 'viewer-links');
  const link = async () => {
    const response = await fetch(`${source.url}/api/v1/studies/${access.linkStudy}/viewer-url`, { headers: bearer(emr.key) });
    expect(response.status).toBe(200);
    return new URL(((await response.json()) as { viewer_url: string }).viewer_url).searchParams.get('token')!;
  };
  access.link = await link();
  access.revokedLink = await link();
  expect((await adminFetch(`${source.url}/api/v1/viewer-tokens/${decodeJwt(access.revokedLink).jti}`, { method: 'DELETE' })).status).toBe(204);
  // Audited reads with the reader's key, to be found in every copy's trail.
  expect((await fetch(`${source.dicomweb}/studies?limit=3`, { headers: bearer(access.readKey.key) })).status).toBe(200);
  expect((await fetch(`${source.dicomweb}/studies/${access.linkStudy}/metadata`, { headers: bearer(access.readKey.key) })).status).toBe(200);

  access.staffPassword = (await signedInUser(source, STAFF_LOGIN, ['read'])).password;
  const put = await adminFetch(`${source.url}/api/v1/application-entities/${MODALITY_AE}`, { method: 'PUT', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(MODALITY) });
  expect(put.status).toBe(201);
  const hook = await adminFetch(`${source.url}/api/v1/webhooks`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(WEBHOOK) });
  expect(hook.status).toBe(201);
  sourceAnswers = await answers(source);
  sourceAudit = await auditOf(source, `key:${access.readKey.id}`);
  expect(sourceAudit).toHaveLength(2);
});

afterAll(async () => {
  for (const server of servers) await server.stop();
  await Promise.all([s3?.stop(), postgres?.close()]);
});

describe('migrate between backends', () => {
  let cloud: Record<string, string>;

  it('copies a running files + SQLite store to S3 and Postgres, which then serves exactly what the source did', { timeout: 180_000 }, async () => {
    const dataDir = await tempDir('pacs-cloud-');
    cloud = { ...s3.env('pacs-migrated'), PACS_DATABASE_URL: await postgres.createDatabase(), PACS_STORAGE_DIR: dataDir };
    const run = await cli(['migrate', '--to-env', await envFile(cloud)], { PACS_STORAGE_DIR: source.dataDir });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: manifest.length, present: 0, failed: 0, total: manifest.length });
    expect(run.stdout).toMatch(/Access: 5 API key\(s\) \(5 added\), 1 viewer-link revocation\(s\) \(1 added\), \d+ audit event\(s\) \(\d+ added\), 1 staff account\(s\) \(1 added; staff sign in again\), 1 DICOM application entity \(1 added\), 1 webhook\(s\) \(1 added\)/);
    expect(run.stdout).toContain('Start the server with the target');
    // Not a TTY here: plain progress lines.
    expect(run.stderr).toMatch(/^migrate: \d+\/42 instances/m);
    // Each object went up once, with the SHA-256 recorded at ingest for the store to check.
    const puts = () => s3.requests.filter((r) => r.method === 'PUT' && r.path.startsWith('/pacs-migrated/studies/'));
    expect(puts()).toHaveLength(manifest.length);
    for (const f of manifest) {
      const put = puts().find((r) => r.path.startsWith(`/pacs-migrated/${keyStart(f)}`));
      expect(put?.headers['x-amz-checksum-sha256'], f.path).toBe(Buffer.from(f.sha256, 'hex').toString('base64'));
    }

    const target = await startServer({ dataDir, env: cloud });
    servers.push(target);
    expect(existsSync(path.join(dataDir, 'index.sqlite'))).toBe(false);
    await expectServesAsSource(target);
    await expectVerifies(cloud, manifest.length);

    // A second run copies nothing again, and carries over a key revoked on the source since.
    expect((await fetch(`${target.dicomweb}/studies?limit=1`, { headers: bearer(access.laptopKey.key) })).status).toBe(200);
    expect((await adminFetch(`${source.url}/api/v1/keys/${access.laptopKey.id}`, { method: 'DELETE' })).status).toBe(204);
    await adminFetch(`${source.url}/api/v1/audit?limit=1`); // the source's pending audit events are written
    const again = await cli(['migrate', '--to-env', await envFile(cloud)], { PACS_STORAGE_DIR: source.dataDir });
    expect(again.code).toBe(0);
    expect(counts(again.stdout)).toEqual({ copied: 0, present: manifest.length, failed: 0, total: manifest.length });
    expect(puts()).toHaveLength(manifest.length);
    expect(again.stdout).toMatch(/Access: 5 API key\(s\) \(0 added, 1 revoked as in the source\), 1 viewer-link revocation\(s\) \(0 added\), \d+ audit event\(s\) \(\d+ added\), 1 staff account\(s\) \(0 added; staff sign in again\), 1 DICOM application entity \(0 added\), 1 webhook\(s\) \(0 added\)/);
    expect((await fetch(`${target.dicomweb}/studies?limit=1`, { headers: bearer(access.laptopKey.key) })).status).toBe(401);
  });

  it('resumes after kill -9: a second run skips what the first copied and completes the rest', { timeout: 180_000 }, async () => {
    for (let i = 0; i < SYNTHETIC; i += 50) {
      const files = syntheticSeries(50, { patientName: `Synthetic^${i}`, rows: 128, columns: 128 });
      expect((await stow(source.dicomweb, files)).status).toBe(200);
    }
    const total = manifest.length + SYNTHETIC;
    const target = { ...s3.env('pacs-resumed'), PACS_DATABASE_URL: await postgres.createDatabase(), PACS_STORAGE_DIR: await tempDir('pacs-resumed-') };
    const file = await envFile(target);

    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', 'migrate', '--to-env', file], { cwd: ROOT, env: cliEnv({ PACS_STORAGE_DIR: source.dataDir }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const killed = await new Promise<NodeJS.Signals | null>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        if (/^migrate: /m.test(chunk.toString())) child.kill('SIGKILL');
      });
      child.on('exit', (_code, signal) => resolve(signal));
    });
    expect(killed).toBe('SIGKILL');
    expect(stdout).not.toMatch(/^Done/m);

    const rerun = await cli(['migrate', '--to-env', file], { PACS_STORAGE_DIR: source.dataDir });
    expect(rerun.code, rerun.stdout).toBe(0);
    const c = counts(rerun.stdout);
    expect(c.total).toBe(total);
    expect(c.failed).toBe(0);
    expect(c.present).toBeGreaterThan(0);
    expect(c.copied).toBeGreaterThan(0);
    expect(c.copied + c.present).toBe(total);
    await expectVerifies(target, total);
  });

  it('refuses a damaged or missing source object, says why, copies the rest and exits 1', { timeout: 120_000 }, async () => {
    const [damaged, missing] = [manifest[3]!, manifest[7]!];
    const objectKey = async (f: Fixture) => {
      const folder = path.dirname(keyStart(f));
      const names = await fs.readdir(path.join(source.dataDir, 'objects', folder));
      return `${folder}/${names.find((name) => `${folder}/${name}`.startsWith(keyStart(f)))}`;
    };
    const [damagedKey, missingKey] = [await objectKey(damaged), await objectKey(missing)];
    const damagedFile = path.join(source.dataDir, 'objects', damagedKey);
    const missingFile = path.join(source.dataDir, 'objects', missingKey);
    const original = await fs.readFile(damagedFile);
    const flipped = Buffer.from(original);
    flipped[flipped.length - 10]! ^= 0x01;
    await fs.writeFile(damagedFile, flipped);
    await fs.rename(missingFile, `${missingFile}.away`);
    try {
      const target = { ...FILES_AND_SQLITE, PACS_STORAGE_DIR: await tempDir('pacs-partial-') };
      const run = await cli(['migrate', '--to-env', await envFile(target)], { PACS_STORAGE_DIR: source.dataDir });
      expect(run.code).toBe(1);
      const total = manifest.length + SYNTHETIC;
      expect(counts(run.stdout)).toEqual({ copied: total - 2, present: 0, failed: 2, total });
      expect(run.stdout).toContain(`DAMAGED  ${damagedKey}: the source object is damaged`);
      expect(run.stdout).toContain(`MISSING  ${missingKey}: the index names this object but the source store does not hold it`);
      expect(run.stdout).toContain('do not switch over yet');
      await expectVerifies(target, total - 2);
    } finally {
      await fs.writeFile(damagedFile, original);
      await fs.rename(`${missingFile}.away`, missingFile);
    }
  });

  it('moves the S3 + Postgres store back to fresh files + SQLite that serve the same', { timeout: 180_000 }, async () => {
    // The other way round too: the source named in the file, the target in the environment (as in a container of the new setup).
    const back = { ...FILES_AND_SQLITE, PACS_STORAGE_DIR: await tempDir('pacs-back-') };
    const run = await cli(['migrate', '--from-env', await envFile(cloud)], back);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(counts(run.stdout)).toEqual({ copied: manifest.length, present: 0, failed: 0, total: manifest.length });
    const again = await cli(['migrate', '--from-env', await envFile(cloud)], back);
    expect(counts(again.stdout)).toEqual({ copied: 0, present: manifest.length, failed: 0, total: manifest.length });
    expect(again.stdout).toMatch(/Access: 5 API key\(s\) \(0 added\), 1 viewer-link revocation\(s\) \(0 added\), \d+ audit event\(s\) \(0 added\)/);

    const server = await startServer({ dataDir: back.PACS_STORAGE_DIR, env: back });
    servers.push(server);
    expect(existsSync(path.join(back.PACS_STORAGE_DIR, 'index.sqlite'))).toBe(true);
    await expectServesAsSource(server);
    await expectVerifies(back, manifest.length);
  });

  it('moves only the index when both ends name the same objects folder: read and verified in place, none written', { timeout: 120_000 }, async () => {
    const objects = path.join(source.dataDir, 'objects');
    const snapshot = async () => {
      const files = (await fs.readdir(objects, { recursive: true, withFileTypes: true })).filter((e) => e.isFile());
      const stats = await Promise.all(files.map((e) => fs.stat(path.join(e.parentPath, e.name)).then((st) => [path.join(e.parentPath, e.name), `${st.ino}:${st.mtimeMs}`])));
      return Object.fromEntries(stats);
    };
    const before = await snapshot();
    const target = { PACS_STORAGE_DIR: source.dataDir, PACS_DATABASE_URL: await postgres.createDatabase() };
    const run = await cli(['migrate', '--to-env', await envFile(target)], { PACS_STORAGE_DIR: source.dataDir });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain('the same object store: objects are read and verified where they are');
    const total = manifest.length + SYNTHETIC;
    expect(counts(run.stdout)).toEqual({ copied: total, present: 0, failed: 0, total });
    expect(await snapshot()).toEqual(before);
    await expectVerifies(target, total);
  });

  it('refuses a target that is the source itself, and a source index that is not there', async () => {
    const same = await cli(['migrate', '--to-env', await envFile({ PACS_STORAGE_DIR: source.dataDir })], { PACS_STORAGE_DIR: source.dataDir });
    expect(same.code).toBe(1);
    expect(same.stderr).toMatch(/The source and the target are the same index/);
    const nowhere = await cli(['migrate', '--to-env', await envFile({ PACS_STORAGE_DIR: await tempDir('pacs-x-') })], { PACS_STORAGE_DIR: path.join(os.tmpdir(), 'no-such-pacs') });
    expect(nowhere.code).toBe(1);
    expect(nowhere.stderr).toMatch(/No index at .*no-such-pacs/);
    const wrong = [['migrate'], ['migrate', '--to-env', 'a.env', '--from-env', 'b.env'], ['migrate', '--to-env', 'a.env', '--parallel', '0']];
    for (const [i, usage] of (await Promise.all(wrong.map((args) => cli(args, {})))).entries()) {
      expect(usage.code, wrong[i]!.join(' ')).toBe(2);
      expect(usage.stderr).toContain('migrate --to-env <file>');
    }
  });
});
