import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import dicomParser from 'dicom-parser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance, syntheticSeries } from '../fixtures/synthetic.js';
import { makeCertificate } from '../helpers/certificate.js';
import { AE, dataSetOf, registerAe, run, sha256, startDicomServer } from '../helpers/dimse.js';
import { adminFetch, freePort, readMultipartResponse, type RunningServer } from '../helpers/server.js';
import { waitFor } from '../helpers/wait.js';
import { indexRows, objectKeys } from '../helpers/stored.js';

/**
 * The DICOM network service as modalities use it, with dcmtk's tools at the other end: C-ECHO, C-STORE of every
 * transfer syntax dcmtk can send, a 300-instance series in one association, several associations at once, refusals,
 * and a sender killed mid-transfer. What arrives is stored byte for byte and is at once found by QIDO and read by WADO.
 */

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/dicom');
const MAX_ASSOCIATIONS = 8;
const MAX_PER_ADDRESS = 6;
type Fixture = { path: string; transferSyntaxUID: string; studyUID: string; seriesUID: string; sopInstanceUID: string };

/**
 * storescu's option that proposes each syntax. dcmtk 3.6.7 has none for JPEG Lossless process 14 (only its SV1
 * selection value, 4.70) nor for HTJ2K, and cannot convert between compressed syntaxes: those fixtures are not sent.
 */
const PROPOSE: Record<string, string> = {
  '1.2.840.10008.1.2': '-xi', '1.2.840.10008.1.2.1': '-xe', '1.2.840.10008.1.2.2': '-xb', '1.2.840.10008.1.2.1.99': '-xd',
  '1.2.840.10008.1.2.4.50': '-xy', '1.2.840.10008.1.2.4.51': '-xx', '1.2.840.10008.1.2.4.70': '-xs',
  '1.2.840.10008.1.2.4.80': '-xt', '1.2.840.10008.1.2.4.81': '-xu', '1.2.840.10008.1.2.4.90': '-xv', '1.2.840.10008.1.2.4.91': '-xw',
  '1.2.840.10008.1.2.5': '-xr',
};

let server: RunningServer;
let dicomPort: number;
let tlsPort: number;
let work: string;

beforeAll(async () => {
  tlsPort = await freePort();
  work = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-dimse-'));
  const { cert, key } = makeCertificate(work);
  ({ server, dicomPort } = await startDicomServer({
    PACS_DICOM_TLS_PORT: String(tlsPort),
    PACS_DICOM_TLS_CERT: cert,
    PACS_DICOM_TLS_KEY: key,
    PACS_DICOM_MAX_ASSOCIATIONS: String(MAX_ASSOCIATIONS),
    PACS_DICOM_MAX_ASSOCIATIONS_PER_ADDRESS: String(MAX_PER_ADDRESS),
    PACS_DICOM_TIMEOUT: '5',
  }));
  // The modality is known, from this address; unknown callers may only echo (PACS_DICOM_ACCEPT_UNKNOWN is off).
  await registerAe(server, 'MODALITY', { host: '127.0.0.1', store: true, query: true });
});

afterAll(async () => {
  await server?.stop();
  if (work) await fs.rm(work, { recursive: true, force: true });
});

/**
 * storescu as MODALITY. TCP_NODELAY: without it dcmtk holds back each data set behind its command (Nagle) until the
 * server's delayed ACK, 40 ms an instance on Linux; modalities' own stacks differ, the server's socket has it set.
 */
const storescu = (files: string[], ...options: string[]) =>
  run('storescu', ['-aet', 'MODALITY', '-aec', AE, ...options, '127.0.0.1', String(dicomPort), ...files], { maxBuffer: 16 * 1024 * 1024, env: { ...process.env, TCP_NODELAY: '1' } });

async function stored(f: Pick<Fixture, 'studyUID' | 'seriesUID' | 'sopInstanceUID'>): Promise<Buffer> {
  const response = await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/series/${f.seriesUID}/instances/${f.sopInstanceUID}`, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
  expect(response.status).toBe(200);
  return (await readMultipartResponse(response))[0]!.body;
}

describe('the DICOM network service', () => {
  it('answers C-ECHO, and says in /healthz where it listens', async () => {
    await run('echoscu', ['-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(dicomPort)]);
    const health = await (await fetch(`${server.url}/healthz`)).json();
    expect(health.dicom).toEqual({ port: dicomPort, tlsPort, aeTitle: AE });
  });

  it('speaks DICOM over TLS on its second port (PS3.15 B.1), and nothing but TLS there', async () => {
    await run('echoscu', ['+tla', '-ic', '-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(tlsPort)]);
    const original = await fs.readFile(path.join(FIXTURES, 'explicit-le.dcm'));
    const ds = dicomParser.parseDicom(original, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
    await run('storescu', ['+tla', '-ic', '-aet', 'MODALITY', '-aec', AE, '127.0.0.1', String(tlsPort), path.join(FIXTURES, 'explicit-le.dcm')], { env: { ...process.env, TCP_NODELAY: '1' } });
    const file = await stored({ studyUID: ds.string('x0020000d')!, seriesUID: ds.string('x0020000e')!, sopInstanceUID: ds.string('x00080018')! });
    expect(sha256(dataSetOf(file))).toBe(sha256(dataSetOf(original)));
    // A plain association on the TLS port gets no answer it could read as DICOM.
    const plain = await run('echoscu', ['-to', '5', '-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(tlsPort)]).catch((e: Error) => e);
    expect(plain).toBeInstanceOf(Error);
  });

  it('speaks DICOM over TLS alone when PACS_DICOM_PORT is 0 and a TLS port is set', async () => {
    const { cert, key } = makeCertificate(work);
    const onlyTls = await freePort();
    const { server: tlsOnly } = await startDicomServer({ PACS_DICOM_PORT: '0', PACS_DICOM_TLS_PORT: String(onlyTls), PACS_DICOM_TLS_CERT: cert, PACS_DICOM_TLS_KEY: key });
    try {
      expect((await (await fetch(`${tlsOnly.url}/healthz`)).json()).dicom).toEqual({ tlsPort: onlyTls, aeTitle: AE });
      await run('echoscu', ['+tla', '-ic', '-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(onlyTls)]);
    } finally {
      await tlsOnly.stop();
    }
  });

  it('refuses an association that calls another AE title, and an unknown caller that would store, saying why in the log', async () => {
    const other = await run('echoscu', ['-aet', 'ANYONE', '-aec', 'SOMEONE', '127.0.0.1', String(dicomPort)]).catch((e: { stderr: string }) => e);
    expect((other as { stderr: string }).stderr).toMatch(/Association Rejected[\s\S]*Called AE Title Not Recognized/i);
    const stranger = await run('storescu', ['-aet', 'STRANGER', '-aec', AE, '127.0.0.1', String(dicomPort), path.join(FIXTURES, 'explicit-le.dcm')]).catch((e: { stderr: string }) => e);
    expect((stranger as { stderr: string }).stderr).toMatch(/Association Rejected[\s\S]*Calling AE Title Not Recognized/i);
    // The server's log reaches the test through a pipe, after storescu may have exited.
    await waitFor('the refusal in the log', () => server.logs.some((line) => line.includes('DICOM association refused') && line.includes('STRANGER') && line.includes('aes add')) || undefined, 10_000);
    // The refusal is in the audit trail, under the AE title it gave and its address.
    const audit = await (await adminFetch(`${server.url}/api/v1/audit?limit=100`)).json();
    expect(JSON.stringify(audit)).toMatch(/ae:STRANGER/);
  });

  it('stores what storescu sends in each transfer syntax, byte for byte, found at once by QIDO', async () => {
    const manifest = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')) as Fixture[];
    const sendable = manifest.filter((f) => PROPOSE[f.transferSyntaxUID]);
    expect(new Set(sendable.map((f) => f.transferSyntaxUID)).size).toBe(Object.keys(PROPOSE).length);
    for (const [syntax, option] of Object.entries(PROPOSE)) {
      const files = sendable.filter((f) => f.transferSyntaxUID === syntax).map((f) => path.join(FIXTURES, f.path));
      await storescu(files, option);
    }
    for (const f of sendable) {
      const original = await fs.readFile(path.join(FIXTURES, f.path));
      const file = await stored(f);
      expect(sha256(dataSetOf(file)), f.path).toBe(sha256(dataSetOf(original)));
      // Its meta information says what travelled and who sent it.
      const meta = dicomParser.parseDicom(file, { untilTag: 'x00020016' } as dicomParser.ParseDicomOptions);
      expect([meta.string('x00020010'), meta.string('x00020016')], f.path).toEqual([f.transferSyntaxUID, 'MODALITY']);
      const found = await (await adminFetch(`${server.dicomweb}/studies/${f.studyUID}/instances?SOPInstanceUID=${f.sopInstanceUID}`)).json();
      expect(found, f.path).toHaveLength(1);
    }
  }, 120_000);

  it('stores a 300-instance series in one association, and series from several associations at once', async () => {
    const write = async (name: string, files: Buffer[]) => {
      const folder = path.join(work, name);
      await fs.mkdir(folder);
      await Promise.all(files.map((bytes, i) => fs.writeFile(path.join(folder, `${i}.dcm`), bytes)));
      return files.map((_, i) => path.join(folder, `${i}.dcm`));
    };
    const big = syntheticSeries(300, { modality: 'CT' });
    await storescu(await write('big', big));
    const parallel = await Promise.all([1, 2, 3, 4].map((n) => write(`p${n}`, syntheticSeries(25, { modality: 'MR' }))));
    await Promise.all(parallel.map((files) => storescu(files)));
    for (const series of [big, ...(await Promise.all(parallel.map((files) => Promise.all(files.map((f) => fs.readFile(f))))))]) {
      const ds = dicomParser.parseDicom(series[0]!, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
      const found = await (await adminFetch(`${server.dicomweb}/studies/${ds.string('x0020000d')}/series/${ds.string('x0020000e')}/instances?limit=1000`)).json();
      expect(found).toHaveLength(series.length);
    }
  }, 120_000);

  it('answers a refused instance with the failure status of its reason, and stores the rest', async () => {
    const study = newUid();
    const good = syntheticInstance({ modality: 'CT', studyUID: study });
    // A SOP Instance UID with a leading zero, which ingest refuses from any door (0xC000).
    const broken = syntheticInstance({ modality: 'CT', studyUID: study, sopInstanceUID: '1.2.840.99.01' });
    const files = await Promise.all([good, broken].map(async (bytes, i) => {
      const file = path.join(work, `refused-${i}.dcm`);
      await fs.writeFile(file, bytes);
      return file;
    }));
    const { stdout, stderr } = await storescu(files, '-d').catch((e: { stdout: string; stderr: string }) => e);
    expect(`${stdout}${stderr}`).toMatch(/Status\s*:?\s*0xc000|Error: Cannot understand/i);
    await waitFor('the refusal in the log', () => server.logs.some((line) => line.includes('C-STORE refused') && line.includes('0xC000')) || undefined, 10_000);
    expect(await (await adminFetch(`${server.dicomweb}/studies/${study}/instances`)).json()).toHaveLength(1);
  });

  it('keeps nothing of an instance whose sender is killed mid-transfer', async () => {
    // 60 MB of pixels at 16 KB PDUs: still on its way when the sender dies.
    const large = syntheticInstance({ modality: 'CT', rows: 4096, columns: 4096, frames: 2 });
    const file = path.join(work, 'large.dcm');
    await fs.writeFile(file, large);
    const ds = dicomParser.parseDicom(large, { untilTag: 'x7fe00010' } as dicomParser.ParseDicomOptions);
    const sender = spawn('storescu', ['-aet', 'MODALITY', '-aec', AE, '127.0.0.1', String(dicomPort), file]);
    const spool = path.join(server.dataDir, 'tmp');
    for (let i = 0; i < 500 && (await spoolBytes(spool)) < 1024 * 1024; i++) await new Promise((r) => setTimeout(r, 10));
    // Written a MiB at a time: its first MiB is in, and 59 more are on their way.
    expect(await spoolBytes(spool)).toBeGreaterThanOrEqual(1024 * 1024);
    sender.kill('SIGKILL');
    await new Promise((r) => sender.once('exit', r));
    // The server notices the connection is gone, drops the upload, and serves on.
    for (let i = 0; i < 100 && (await spoolBytes(spool)) > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(await spoolBytes(spool)).toBe(0);
    expect(await indexRows(server, 'SELECT sop_uid FROM instances WHERE sop_uid = ?', [ds.string('x00080018')])).toHaveLength(0);
    expect((await objectKeys(server)).some((key) => key.includes(ds.string('x00080018')!))).toBe(false);
    await run('echoscu', ['-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(dicomPort)]);
  }, 60_000);
});

describe('the DICOM network service, against callers that would hold it', () => {
  /** A raw connection, and a promise of how long it stayed open. */
  const connect = () => {
    const socket = net.connect(dicomPort, '127.0.0.1');
    const opened = Date.now();
    const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - opened)));
    socket.on('error', () => undefined);
    return { socket, closed };
  };

  it('disconnects at once a caller whose PDU declares more than the largest it may send', async () => {
    const { socket, closed } = connect();
    // An A-ASSOCIATE-RQ header declaring 100 MB, then a trickle: it would be buffered whole by a naive reader.
    const header = Buffer.alloc(6);
    header.writeUInt8(0x01, 0);
    header.writeUInt32BE(100 * 1024 * 1024, 2);
    socket.write(header);
    socket.write(Buffer.alloc(1000));
    expect(await closed).toBeLessThan(2000);
    const logged = () => server.logs.some((line) => line.includes('DICOM connection closed') && line.includes('declares 104857600 bytes'));
    for (let i = 0; i < 50 && !logged(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(logged()).toBe(true);
  });

  it('disconnects a caller that sends data before it has an association', async () => {
    const { socket, closed } = connect();
    // A P-DATA-TF of one PDV item (a command fragment) with no association at all.
    const pdu = Buffer.alloc(6 + 6 + 10);
    pdu.writeUInt8(0x04, 0);
    pdu.writeUInt32BE(16, 2);
    pdu.writeUInt32BE(12, 6);
    pdu.writeUInt8(1, 10);
    pdu.writeUInt8(0x03, 11);
    socket.write(pdu);
    expect(await closed).toBeLessThan(2000);
    const logged = () => server.logs.some((line) => line.includes('P-DATA came before the association was accepted'));
    for (let i = 0; i < 50 && !logged(); i++) await new Promise((r) => setTimeout(r, 20));
    expect(logged()).toBe(true);
  });

  it('aborts a caller that stays silent, and refuses past the most associations from one address as a local limit', async () => {
    const silent = connect();
    expect(await silent.closed).toBeGreaterThan(4000);
    // Fewer than the server's limit, as many as one address may hold: the next from there is refused all the same.
    expect(MAX_PER_ADDRESS).toBeLessThan(MAX_ASSOCIATIONS - 1);
    const held = Array.from({ length: MAX_PER_ADDRESS }, connect);
    await new Promise((r) => setTimeout(r, 200));
    const refused = await run('echoscu', ['-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(dicomPort)]).catch((e: { stderr: string }) => e);
    expect((refused as { stderr: string }).stderr).toMatch(/Association Rejected[\s\S]*Local Limit Exceeded/i);
    for (const { socket } of held) socket.destroy();
    await Promise.all(held.map((h) => h.closed));
    await run('echoscu', ['-aet', 'ANYONE', '-aec', AE, '127.0.0.1', String(dicomPort)]);
  }, 20_000);
});

/** Bytes in the spool folder's files. */
async function spoolBytes(folder: string): Promise<number> {
  let total = 0;
  for (const name of await fs.readdir(folder, { recursive: true })) {
    const stat = await fs.stat(path.join(folder, name)).catch(() => undefined);
    if (stat?.isFile()) total += stat.size;
  }
  return total;
}
