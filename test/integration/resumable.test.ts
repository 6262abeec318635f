import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import * as tus from 'tus-js-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, readMultipartResponse, startServer, stowBody, TEST_ADMIN_KEY, type RunningServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';

const run = promisify(execFile);

/**
 * Resumable uploads (issue 15) with tus-js-client, the protocol's own client (the upload page uses its browser
 * build): a file stored once all its bytes are in, an upload broken off resumed from where it stopped.
 */

let server: RunningServer;
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.stop();
});

type Answer = { file: string; status: string; sop_instance_uid: string | null; corrected: string[]; reason: string | null };

/** Starts an upload; `done` is the final answer's body. */
function upload(bytes: Buffer, fields: Record<string, string>, opts: Partial<tus.UploadOptions> = {}): { upload: tus.Upload; done: Promise<Answer> } {
  let upload!: tus.Upload;
  const done = new Promise<Answer>((resolve, reject) => {
    upload = new tus.Upload(bytes, {
      endpoint: `${server.url}/api/v1/resumable`,
      headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}` },
      metadata: { filename: 'IM0001', fields: JSON.stringify(fields) },
      retryDelays: null,
      storeFingerprintForResuming: false,
      onSuccess: (payload) => resolve(JSON.parse(payload.lastResponse.getBody()) as Answer),
      onError: reject,
      ...opts,
    });
  });
  upload.start();
  return { upload, done };
}

async function storedBytes(bytes: Buffer, sop: string): Promise<Buffer | undefined> {
  const found = (await (await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${sop}`)).json()) as Array<Record<string, { Value: string[] }>>;
  if (found.length === 0) return undefined;
  const [study, series] = [found[0]!['0020000D']!.Value[0], found[0]!['0020000E']!.Value[0]];
  const response = await adminFetch(`${server.dicomweb}/studies/${study}/series/${series}/instances/${sop}`, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  return (await readMultipartResponse(response))[0]!.body;
}

describe('resumable uploads', () => {
  // Whole in the request that creates the upload (as the upload page sends a file up to its chunk), or created first
  // and then sent (as an older tus client does).
  it.each([
    ['whole in the creating request', true],
    ['created, then sent', false],
  ])('store a file once all its bytes are in, with the order\'s values set on it: %s', async (_how, uploadDataDuringCreation) => {
    const patientId = `TUS-1-${uploadDataDuringCreation}`;
    const bytes = syntheticInstance({ patientID: 'TUS-OLD', rows: 128, columns: 128 });
    const answer = await upload(bytes, { patient_id: patientId, reason: 'matched to its order' }, { uploadDataDuringCreation }).done;
    expect(answer).toMatchObject({ status: 'stored', corrected: ['PatientID'], reason: null });
    const stored = await storedBytes(bytes, answer.sop_instance_uid!);
    expect(stored?.includes(Buffer.from(patientId))).toBe(true);
    // Logged and audited under who uploaded, like any upload.
    const log = (await (await adminFetch(`${server.url}/api/v1/uploads?patient_id=${patientId}`)).json()) as Array<{ door: string; credential: string }>;
    expect(log).toEqual([expect.objectContaining({ door: 'form', credential: expect.stringMatching(/^key:/) })]);
    // As sent, when no value is to be set; and once only, sent again.
    const plain = syntheticInstance({ rows: 64, columns: 64 });
    expect(await upload(plain, {}, { uploadDataDuringCreation }).done).toMatchObject({ status: 'stored', corrected: [] });
    expect((await storedBytes(plain, (await upload(plain, {}, { uploadDataDuringCreation }).done).sop_instance_uid!))?.equals(plain)).toBe(true);
  });

  it.each([
    ['whole in the creating request', true],
    ['created, then sent', false],
  ])('store a bundle of small files, each judged on its own and named in the answer: %s', async (_how, uploadDataDuringCreation) => {
    const patientId = `TUS-B-${uploadDataDuringCreation}`;
    const files = [syntheticInstance({ patientID: 'OLD', rows: 32, columns: 32 }), Buffer.from('not a DICOM file at all'), syntheticInstance({ patientID: 'OLD', rows: 32, columns: 32 })];
    const { body, contentType } = stowBody(files);
    let answer!: { files: Answer[] };
    await new Promise<void>((resolve, reject) => {
      new tus.Upload(body, {
        endpoint: `${server.url}/api/v1/resumable`,
        headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}` },
        metadata: { filetype: contentType, filenames: JSON.stringify(['IM1', 'notes.txt', 'IM2']), fields: JSON.stringify({ patient_id: patientId, reason: 'matched to its order' }) },
        uploadDataDuringCreation,
        retryDelays: null,
        storeFingerprintForResuming: false,
        onSuccess: (payload) => {
          answer = JSON.parse(payload.lastResponse.getBody());
          resolve();
        },
        onError: reject,
      }).start();
    });
    expect(answer.files.map((f) => [f.file, f.status, f.corrected])).toEqual([
      ['IM1', 'stored', ['PatientID']],
      ['notes.txt', 'refused', []],
      ['IM2', 'stored', ['PatientID']],
    ]);
    expect(answer.files[1]!.reason).toMatch(/DICOM/);
    for (const f of [answer.files[0]!, answer.files[2]!]) expect((await storedBytes(Buffer.alloc(0), f.sop_instance_uid!))?.includes(Buffer.from(patientId))).toBe(true);
    // One upload in the log, for the bundle.
    const log = (await (await adminFetch(`${server.url}/api/v1/uploads?patient_id=${patientId}`)).json()) as Array<{ stored: number; refused: number }>;
    expect(log).toEqual([expect.objectContaining({ stored: 2, refused: 1 })]);
  });

  /** A ZIP archive made by Python's zipfile (another implementation than the server's reader): `{ name: bytes }`. */
  async function zipOf(entries: Record<string, Buffer>): Promise<Buffer> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-tus-zip-'));
    try {
      const list = Object.entries(entries).map(([name, bytes], i) => ({ name, file: path.join(dir, String(i)) }));
      for (const [i, bytes] of Object.values(entries).entries()) await fs.writeFile(list[i]!.file, bytes);
      const script = 'import zipfile,json,sys\nwith zipfile.ZipFile(sys.argv[1],"w",zipfile.ZIP_DEFLATED) as z:\n  for e in json.loads(sys.argv[2]): z.write(e["file"], e["name"])';
      await run('python3', ['-c', script, path.join(dir, 'out.zip'), JSON.stringify(list)]);
      return await fs.readFile(path.join(dir, 'out.zip'));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  /** Sends a ZIP archive as one resumable upload, in chunks or whole in its creating request; the answer's body. */
  function uploadArchive(zip: Buffer, name: string, fields: Record<string, string>, uploadDataDuringCreation = false): Promise<{ files: Answer[]; others: number }> {
    return new Promise((resolve, reject) => {
      new tus.Upload(zip, {
        endpoint: `${server.url}/api/v1/resumable`,
        headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}` },
        metadata: { filename: name, filetype: 'application/zip', fields: JSON.stringify(fields) },
        chunkSize: uploadDataDuringCreation ? zip.length : 4096,
        uploadDataDuringCreation,
        retryDelays: null,
        storeFingerprintForResuming: false,
        onSuccess: (payload) => resolve(JSON.parse(payload.lastResponse.getBody())),
        onError: reject,
      }).start();
    });
  }

  it('store the DICOM files of a ZIP archive (a CD copied into one, a ZIP inside it), each with its result, and say what else it held', async () => {
    const patientId = 'TUS-ZIP-1';
    const [a, b, c] = [1, 2, 3].map(() => syntheticInstance({ patientID: 'OLD', rows: 256, columns: 256 }));
    const inner = await zipOf({ 'IM3': c! });
    const zip = await zipOf({ 'DICOM/PAT1/IM1': a!, 'DICOM/PAT1/IM2': b!, 'DICOM/inner.zip': inner, 'README.TXT': Buffer.from('Viewer on this disc: run VIEWER.EXE') });
    expect(zip.length, 'sent in several chunks').toBeGreaterThan(2 * 4096);
    const answer = await uploadArchive(zip, 'cd-from-st-marys.zip', { patient_id: patientId, reason: 'a CD from another hospital' });
    expect(answer.files.map((f) => [f.file, f.status, f.corrected])).toEqual([
      ['cd-from-st-marys.zip!/DICOM/PAT1/IM1', 'stored', ['PatientID']],
      ['cd-from-st-marys.zip!/DICOM/PAT1/IM2', 'stored', ['PatientID']],
      ['cd-from-st-marys.zip!/DICOM/inner.zip!/IM3', 'stored', ['PatientID']],
    ]);
    expect(answer.others).toBe(1);
    const found = (await (await adminFetch(`${server.dicomweb}/instances?PatientID=${patientId}`)).json()) as unknown[];
    expect(found).toHaveLength(3);
    const log = (await (await adminFetch(`${server.url}/api/v1/uploads?patient_id=${patientId}`)).json()) as Array<{ stored: number; refused: number }>;
    expect(log).toEqual([expect.objectContaining({ stored: 3, refused: 0 })]);
    // Nothing of the archive is left behind: not its upload, not what was unpacked from it.
    await waitFor('the upload\'s files to go', async () => ((await fs.readdir(path.join(server.dataDir, 'resumable'))).length === 0) || undefined);
    const spool = await fs.readdir(path.join(server.dataDir, 'tmp'), { recursive: true });
    expect(spool.filter((f) => /archive-|\.part$/.test(String(f)))).toEqual([]);
  });

  it('refuse a ZIP archive whose names leave it (ZIP slip) whole, saying why, storing nothing of it', async () => {
    const sop = syntheticInstance({ patientID: 'TUS-SLIP', rows: 32, columns: 32 });
    const zip = await zipOf({ 'IM1': sop, '../../etc/cron.d/evil': Buffer.from('* * * * * root id') });
    // Whole in its creating request, as the upload page sends an archive up to its chunk: read from a spooled copy.
    const answer = await uploadArchive(zip, 'slip.zip', {}, true);
    expect(answer.files).toEqual([expect.objectContaining({ file: 'slip.zip', status: 'refused', reason: expect.stringMatching(/leaves the archive/) })]);
    expect((await (await adminFetch(`${server.dicomweb}/instances?PatientID=TUS-SLIP`)).json()) as unknown[]).toHaveLength(0);
  });

  it('refuses a bundle of other parts than DICOM files, or whose names are not a list, before a byte is taken', async () => {
    const create = (metadata: Record<string, string>) =>
      fetch(`${server.url}/api/v1/resumable`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0', 'Upload-Length': '1000', 'Upload-Metadata': Object.entries(metadata).map(([k, v]) => `${k} ${Buffer.from(v).toString('base64')}`).join(',') },
      });
    const wrongType = await create({ filetype: 'multipart/related; type="application/dicom+json"; boundary=x' });
    expect(wrongType.status).toBe(415);
    expect(await wrongType.text()).toMatch(/application\/dicom parts/);
    const badNames = await create({ filetype: 'multipart/related; type="application/dicom"; boundary=x', filenames: '{"a":1}' });
    expect(badNames.status).toBe(400);
    expect(await badNames.text()).toMatch(/JSON list of names/);
  });

  it('answers a file sent whole in its creating request tus\'s own way too (chunked, without metadata) as a creation with its result', async () => {
    const bytes = syntheticInstance({ rows: 32, columns: 32 });
    const create = (body: BodyInit, headers: Record<string, string>) =>
      fetch(`${server.url}/api/v1/resumable`, {
        method: 'POST',
        body,
        headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream', 'Upload-Length': String(bytes.length), ...headers },
        duplex: 'half',
      } as RequestInit);
    // Chunked: no Content-Length to tell it is whole before it is read.
    const chunked = await create(new Blob([new Uint8Array(bytes)]).stream(), {});
    expect(chunked.status, await chunked.clone().text()).toBe(201);
    expect(chunked.headers.get('location')).toMatch(/\/api\/v1\/resumable\/[0-9a-f]+$/);
    expect(chunked.headers.get('upload-offset')).toBe(String(bytes.length));
    expect(((await chunked.json()) as Answer).status).toBe('stored');
    // With its length but no Upload-Metadata, which tus allows: stored, and sent again, already stored.
    const bare = await create(new Uint8Array(bytes), { 'Content-Length': String(bytes.length) });
    expect(bare.status).toBe(201);
    expect(((await bare.json()) as Answer).status).toBe('already-stored');
  });

  it('refuses a bundle without a file in it', async () => {
    const { body, contentType } = stowBody([]);
    const empty = await fetch(`${server.url}/api/v1/resumable`, {
      method: 'POST',
      body: new Uint8Array(body),
      headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0', 'Content-Type': 'application/offset+octet-stream', 'Upload-Length': String(body.length), 'Upload-Metadata': `filetype ${Buffer.from(contentType).toString('base64')}` },
    });
    expect(empty.status).toBe(400);
    expect(await empty.text()).toMatch(/holds no files|no parts/);
  });

  it('keeps nothing of a file whose creating request is cut short, and serves on', async () => {
    const bytes = syntheticInstance({ rows: 256, columns: 256 });
    const sop = bytes.subarray(0, 400).toString('latin1').match(/2\.25\.\d+/)![0];
    const { port } = new URL(server.url);
    const socket = net.connect(Number(port), '127.0.0.1');
    await new Promise((resolve) => socket.once('connect', resolve));
    socket.write(
      [
        'POST /api/v1/resumable HTTP/1.1',
        `Host: 127.0.0.1:${port}`,
        `Authorization: Bearer ${TEST_ADMIN_KEY}`,
        'Tus-Resumable: 1.0.0',
        'Content-Type: application/offset+octet-stream',
        `Upload-Length: ${bytes.length}`,
        `Content-Length: ${bytes.length}`,
        '',
        '',
      ].join('\r\n'),
    );
    socket.write(bytes.subarray(0, bytes.length / 2));
    await new Promise((r) => setTimeout(r, 300));
    socket.destroy();
    // The spool is a folder of this process's own in tmp/; tus keeps its uploads in resumable/.
    const spooled = async () => {
      const files = await Promise.all(['tmp', 'resumable'].map((dir) => fs.readdir(path.join(server.dataDir, dir), { recursive: true, withFileTypes: true }).catch(() => [])));
      return files.flat().filter((e) => e.isFile()).length;
    };
    await waitFor('the server to let go of the half-sent file', async () => (await spooled()) === 0);
    expect(await storedBytes(bytes, sop)).toBeUndefined();
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
    expect((await upload(bytes, {}, { uploadDataDuringCreation: true }).done).status).toBe('stored');
  });

  it('resume an upload broken off, from the bytes the server has, and store it once', async () => {
    const bytes = syntheticInstance({ patientID: 'TUS-2', rows: 512, columns: 512 });
    const sop = /* the synthetic file names its instance in its meta information */ bytes.subarray(0, 400).toString('latin1').match(/2\.25\.\d+/)![0];
    let uploadUrl: string | null = null;
    const first = upload(bytes, {}, {
      chunkSize: 64 * 1024,
      // Its first chunk in the creating request: that request alone does not complete the file.
      uploadDataDuringCreation: true,
      onChunkComplete: (_chunk, accepted) => {
        // The connection drops after three chunks: nothing is stored yet.
        if (accepted >= 3 * 64 * 1024) void first.upload.abort();
      },
      onAfterResponse: () => {
        uploadUrl ??= first.upload.url;
      },
    });
    await expect(Promise.race([first.done, new Promise((r) => setTimeout(r, 3000, 'aborted'))])).resolves.toBe('aborted');
    expect(uploadUrl).toMatch(/\/api\/v1\/resumable\/[0-9a-f]+$/);
    expect(await storedBytes(bytes, sop)).toBeUndefined();
    const offset = await fetch(uploadUrl!, { method: 'HEAD', headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0' } });
    expect(Number(offset.headers.get('upload-offset'))).toBe(3 * 64 * 1024);

    let resentFrom = -1;
    const resumed = upload(bytes, {}, {
      uploadUrl,
      onProgress: (sent) => {
        if (resentFrom < 0) resentFrom = sent;
      },
    });
    expect((await resumed.done).status).toBe('stored');
    expect(resentFrom).toBeGreaterThanOrEqual(3 * 64 * 1024);
    expect((await storedBytes(bytes, sop))?.equals(bytes)).toBe(true);
  });

  it('refuses an upload over PACS_MAX_INSTANCE_BYTES, bad fields, and a caller without the upload right, before a byte is taken', async () => {
    const tooLarge = await fetch(`${server.url}/api/v1/resumable`, { method: 'POST', headers: { Authorization: `Bearer ${TEST_ADMIN_KEY}`, 'Tus-Resumable': '1.0.0', 'Upload-Length': String(64 * 1024 ** 3) } });
    expect(tooLarge.status).toBe(413);
    const badFields = await upload(syntheticInstance(), { patient_id: 'X' }).done.catch((e: Error) => e.message);
    expect(badFields).toMatch(/say why the values are corrected/);
    const anonymous = await fetch(`${server.url}/api/v1/resumable`, { method: 'POST', headers: { 'Tus-Resumable': '1.0.0', 'Upload-Length': '10' } });
    expect(anonymous.status).toBe(401);
  });
});
