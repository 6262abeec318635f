import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { AE, registerAe, run, startDicomServer } from '../helpers/dimse.js';
import { adminFetch, stow, type RunningServer } from '../helpers/server.js';

/**
 * The upload log (issue 15): one record an upload, whatever its door (STOW-RS, the command line's import, the DICOM
 * network), saying who, from where, what was stored, already there or refused and why; searched by study, patient,
 * credential and time by an administrator.
 */

type Logged = { id: string; at: string; door: string; credential: string; ip: string | null; stored: number; already_stored: number; refused: number; refusals: Array<{ sop_instance_uid: string | null; failure_reason: number; reason: string }>; studies: string[]; patient_ids: string[] };

let server: RunningServer;
let dicomPort: number;
let uploader: { id: string; key: string };

beforeAll(async () => {
  ({ server, dicomPort } = await startDicomServer());
  await registerAe(server, 'MODALITY', { host: '127.0.0.1', store: true });
  const made = await adminFetch(`${server.url}/api/v1/keys`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ name: 'Scanner room', role: 'upload' }) });
  expect(made.status).toBe(201);
  uploader = (await made.json()) as { id: string; key: string };
});

afterAll(async () => {
  await server?.stop();
});

async function log(query = ''): Promise<Logged[]> {
  const response = await adminFetch(`${server.url}/api/v1/uploads${query}`);
  expect(response.status, await response.clone().text()).toBe(200);
  return (await response.json()) as Logged[];
}

describe('the upload log', () => {
  it('records a STOW-RS request: who, from where, what was stored, already there and refused, and why', async () => {
    const studyUID = newUid();
    const [a, b] = syntheticSeries(2, { studyUID, patientID: 'LOG-STOW' });
    const broken = Buffer.from(syntheticInstance({ studyUID }).subarray(0, 300));
    const response = await stow(server.dicomweb, [a!, b!, broken], undefined, { Authorization: `Bearer ${uploader.key}` });
    expect(response.status).toBe(202);
    const [first] = await log(`?study=${studyUID}`);
    expect(first).toMatchObject({ door: 'stow', credential: `key:${uploader.id}`, stored: 2, already_stored: 0, refused: 1, studies: [studyUID], patient_ids: ['LOG-STOW'] });
    expect(first!.ip).toMatch(/127\.0\.0\.1/);
    expect(first!.refusals).toHaveLength(1);
    expect(first!.refusals[0]!.reason.length).toBeGreaterThan(10);
    expect((await stow(server.dicomweb, [a!], undefined, { Authorization: `Bearer ${uploader.key}` })).status).toBe(200);
    const [again] = await log(`?study=${studyUID}`);
    expect(again).toMatchObject({ stored: 0, already_stored: 1, refused: 0 });
    expect(again!.id).not.toBe(first!.id);
  });

  it('keeps uploads made at once apart, each with its own studies and patients, though they are written together', async () => {
    const uploads = ['LOG-A', 'LOG-B', 'LOG-C'].map((patientID) => ({ patientID, studyUID: newUid() }));
    const answers = await Promise.all(uploads.map((u) => stow(server.dicomweb, syntheticSeries(2, u), undefined, { Authorization: `Bearer ${uploader.key}` })));
    expect(answers.map((r) => r.status)).toEqual([200, 200, 200]);
    for (const u of uploads) {
      expect(await log(`?study=${u.studyUID}`)).toEqual([expect.objectContaining({ stored: 2, studies: [u.studyUID], patient_ids: [u.patientID] })]);
    }
  });

  it('records a command-line import under the user who ran it', async () => {
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-upload-log-'));
    const studyUID = newUid();
    const files = syntheticSeries(3, { studyUID, patientID: 'LOG-IMPORT' });
    await Promise.all(files.map((f, i) => fs.writeFile(path.join(folder, `IM${i}`), f)));
    const imported = await cli(['import', folder], server.dataDir, server.backend.env);
    expect(imported.code, imported.stdout + imported.stderr).toBe(0);
    const [record] = await log('?patient_id=LOG-IMPORT');
    expect(record).toMatchObject({ door: 'import', ip: null, stored: 3, studies: [studyUID], patient_ids: ['LOG-IMPORT'] });
    expect(record!.credential).toMatch(/^cli:/);
    // And in the audit trail, under the study it touched.
    const audit = (await (await adminFetch(`${server.url}/api/v1/audit?study=${studyUID}`)).json()) as Array<{ method: string; path: string; query: string }>;
    expect(audit).toEqual(expect.arrayContaining([expect.objectContaining({ method: 'CLI', path: 'import', query: 'stored=3&present=0&refused=0' })]));
    await fs.rm(folder, { recursive: true, force: true });
  });

  it('records a DICOM association that stored, under its AE title and address, once it has ended', async () => {
    const folder = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-upload-log-'));
    const studyUID = newUid();
    const files = syntheticSeries(4, { studyUID, patientID: 'LOG-DIMSE' });
    const paths = await Promise.all(files.map(async (f, i) => {
      const file = path.join(folder, `IM${i}.dcm`);
      await fs.writeFile(file, f);
      return file;
    }));
    await run('storescu', ['-aet', 'MODALITY', '-aec', AE, '127.0.0.1', String(dicomPort), ...paths], { env: { ...process.env, TCP_NODELAY: '1' } });
    let record: Logged | undefined;
    for (const started = Date.now(); !record && Date.now() - started < 10_000; await new Promise((r) => setTimeout(r, 50))) [record] = await log(`?credential=ae:MODALITY&study=${studyUID}`);
    expect(record).toMatchObject({ door: 'dicom', credential: 'ae:MODALITY', stored: 4, refused: 0, studies: [studyUID], patient_ids: ['LOG-DIMSE'] });
    expect(record!.ip).toMatch(/127\.0\.0\.1/);
    await fs.rm(folder, { recursive: true, force: true });
  });

  it('is searched by time and paged, newest first, and refuses an unknown or malformed parameter', async () => {
    const all = await log('?limit=1000');
    expect(all.length).toBeGreaterThanOrEqual(4);
    expect(all.map((u) => u.at)).toEqual([...all.map((u) => u.at)].sort().reverse());
    expect(await log(`?limit=1&offset=1`)).toEqual([all[1]]);
    expect(await log(`?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).toEqual([]);
    expect((await log(`?until=${encodeURIComponent(all.at(-1)!.at)}`)).map((u) => u.id)).toContain(all.at(-1)!.id);
    for (const [query, message] of [['?patient=X', /unknown parameter patient/], ['?since=yesterday', /since must be an ISO 8601 time/], ['?limit=5000', /limit is at most 1000/], ['?study=1.2.x', /Study Instance UID/]] as const) {
      const refused = await adminFetch(`${server.url}/api/v1/uploads${query}`);
      expect(refused.status, query).toBe(400);
      expect((await refused.json()).detail, query).toMatch(message);
    }
  });

  it('is for administrators only', async () => {
    const response = await fetch(`${server.url}/api/v1/uploads`, { headers: { Authorization: `Bearer ${uploader.key}` } });
    expect(response.status).toBe(403);
  });
});
