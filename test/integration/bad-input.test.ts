import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import zlib from 'node:zlib';
import dicomParser from 'dicom-parser';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { newUid, writePart10 } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { AS_ADMIN, adminFetch, readMultipartResponse, startServer, stowBody, type RunningServer } from '../helpers/server.js';
import { indexRows as queryIndex, objectKeys } from '../helpers/stored.js';
import { delimiter, element, LONG_LENGTH_VRS } from '../fixtures/raw-elements.js';

/**
 * The "bad input" requirement: every malformed upload gets the right DICOMweb status and a reason a person can
 * act on, in bounded memory and time; nothing is half stored and the server stays up for the next client.
 */

const KB = 1024;
const MB = 1024 * KB;
// Small limits, so that the size cases need only a few megabytes.
const LIMITS = { PACS_MAX_REQUEST_BYTES: '2MB', PACS_MAX_INSTANCE_BYTES: '1MB' };
const FailureReason = { OutOfResources: 0xa700, DataSetDoesNotMatch: 0xa900, CannotUnderstand: 0xc000 };
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

let server: RunningServer;

beforeAll(async () => {
  server = await startServer({ env: LIMITS });
});
afterAll(async () => {
  await server?.stop();
});
afterEach(async () => {
  // Whatever a case sent, the store is consistent and the server takes the next good upload.
  await expectConsistentStore();
  const good = goodInstance();
  const result = await send([good.bytes]);
  expect(result.status, JSON.stringify(result.body)).toBe(200);
  expect(await (await adminFetch(`${server.url}/healthz`)).json()).toMatchObject({ status: 'ok' });
  // Bad input is the client's problem: nothing the server logs as its own failure (pino level 50 and up).
  expect(server.logs.filter((line) => /"level":[5-9]\d/.test(line))).toEqual([]);
});

// ---- malformed files, byte by byte (Explicit VR Little Endian unless said otherwise) ----

function goodInstance(o: Parameters<typeof syntheticInstance>[0] = {}): { uid: string; bytes: Buffer } {
  const uid = o.sopInstanceUID ?? newUid();
  return { uid, bytes: syntheticInstance({ rows: 16, columns: 16, ...o, sopInstanceUID: uid }) };
}

/** A valid instance without pixel data whose data set ends with `tail` (tags after (0020,000E)). */
function instanceEndingWith(tail: Buffer): Buffer {
  const sopInstanceUID = newUid();
  const uids = [
    { tag: '00080016', vr: 'UI', value: SECONDARY_CAPTURE },
    { tag: '00080018', vr: 'UI', value: sopInstanceUID },
    { tag: '0020000D', vr: 'UI', value: newUid() },
    { tag: '0020000E', vr: 'UI', value: newUid() },
  ];
  return Buffer.concat([writePart10(uids, { transferSyntaxUID: TransferSyntax.ExplicitVRLittleEndian, sopClassUID: SECONDARY_CAPTURE, sopInstanceUID }), tail]);
}

/** `file` with the length of its element `tag` (written with `vr`) replaced by `length`. */
function withDeclaredLength(file: Buffer, tag: string, vr: string, length: number, transferSyntax: 'explicit' | 'implicit' = 'explicit'): Buffer {
  const tagBytes = Buffer.alloc(4);
  tagBytes.writeUInt16LE(Number.parseInt(tag.slice(0, 4), 16), 0);
  tagBytes.writeUInt16LE(Number.parseInt(tag.slice(4), 16), 2);
  const key = transferSyntax === 'explicit' ? Buffer.concat([tagBytes, Buffer.from(vr, 'latin1')]) : tagBytes;
  const at = file.indexOf(key, 132 + 100); // past the meta header
  if (at < 0) throw new Error(`no element ${tag} in the file`);
  const out = Buffer.from(file);
  if (transferSyntax === 'implicit') out.writeUInt32LE(length, at + 4);
  else if (LONG_LENGTH_VRS.has(vr)) out.writeUInt32LE(length, at + 8);
  else out.writeUInt16LE(length, at + 6);
  return out;
}

/**
 * A Deflated Explicit VR Little Endian file whose data set inflates to `inflatedBytes`, most of it `filler` over and
 * over: zeros make a small file that inflates far (a bomb), noise a file about as large deflated as inflated.
 */
async function deflatedInstance(inflatedBytes: number, filler = Buffer.alloc(MB)): Promise<{ uid: string; bytes: Buffer }> {
  const sopInstanceUID = newUid();
  const deflate = zlib.createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (c: Buffer) => out.push(c));
  const head = Buffer.concat([
    element('00080016', 'UI', Buffer.from(`${SECONDARY_CAPTURE}\0`)),
    element('00080018', 'UI', Buffer.from(sopInstanceUID.length % 2 ? `${sopInstanceUID}\0` : sopInstanceUID)),
    element('00420011', 'OB', Buffer.alloc(0), inflatedBytes),
  ]);
  deflate.write(head);
  for (let sent = head.length; sent < inflatedBytes; sent += filler.length) if (!deflate.write(filler)) await once(deflate, 'drain');
  deflate.end();
  await once(deflate, 'end');
  const meta = writePart10([], { transferSyntaxUID: TransferSyntax.DeflatedExplicitVRLittleEndian, sopClassUID: SECONDARY_CAPTURE, sopInstanceUID });
  return { uid: sopInstanceUID, bytes: Buffer.concat([meta, ...out]) };
}

// ---- talking to the server ----

type Failure = { sopClassUID?: string; sopInstanceUID?: string; reason: number; comment: string };
type StowResult = { status: number; body: any; stored: string[]; failed: Failure[] };

/** One STOW-RS request with the files as application/dicom parts (or parts of another type). */
async function send(parts: Array<Buffer | { contentType: string; body: Buffer }>, studyUID?: string): Promise<StowResult> {
  const { body, contentType } = stowBody(parts);
  const response = await adminFetch(`${server.dicomweb}/studies${studyUID ? `/${studyUID}` : ''}`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: new Uint8Array(body),
    signal: AbortSignal.timeout(15_000),
  });
  return stowResult(response.status, await response.json());
}

function stowResult(status: number, body: any): StowResult {
  return {
    status,
    body,
    stored: (body['00081199']?.Value ?? []).map((i: any) => i['00081155'].Value[0]),
    failed: (body['00081198']?.Value ?? []).map((i: any) => ({
      sopClassUID: i['00081150']?.Value[0],
      sopInstanceUID: i['00081155']?.Value[0],
      reason: i['00081197'].Value[0],
      comment: i['00000902'].Value[0],
    })),
  };
}

/**
 * Sends `bad` between two good instances: they are stored (202) and it alone fails, with `reason` and an
 * ErrorComment matching `comment`.
 */
async function expectRefusedBesideGood(bad: Buffer, reason: number, comment: RegExp, studyUID?: string): Promise<Failure> {
  const [before, after] = [goodInstance({ studyUID }), goodInstance({ studyUID })];
  const result = await send([before.bytes, bad, after.bytes], studyUID);
  expect(result.status, JSON.stringify(result.body)).toBe(202);
  expect(result.stored).toEqual([before.uid, after.uid]);
  expect(result.failed).toHaveLength(1);
  const [failure] = result.failed as [Failure];
  expect(failure.reason.toString(16)).toBe(reason.toString(16));
  expect(failure.comment).toMatch(comment);
  expect(await indexedSopUids()).toEqual(expect.arrayContaining([before.uid, after.uid]));
  return failure;
}

/**
 * POSTs `pieces` one write() at a time over node:http: chunked unless `headers` give a Content-Length, and left
 * open after the last piece when `end` is false. Resolves with the answer, which may come before the body is sent.
 */
function postInPieces(pieces: Buffer[], headers: Record<string, string>, end = true, pauseMs = 0): Promise<{ status: number; body: any; connection?: string; answeredAfterEnd: boolean }> {
  let ended = false;
  return new Promise((resolve, reject) => {
    // A connection of its own (still keep-alive, which a test checks the server honours): one kept from an earlier
    // request may be one the server is closing (it answered 413 with Connection: close), which a loaded machine hands
    // back as a reset before the first byte is sent.
    const request = http.request(`${server.dicomweb}/studies`, { method: 'POST', agent: new http.Agent({ keepAlive: true }), headers: { ...AS_ADMIN, ...headers } });
    request.setTimeout(15_000, () => request.destroy(new Error('no answer within 15 s')));
    request.on('error', reject); // once answered, a reset of the rest of the upload changes nothing
    request.on('response', async (response) => {
      const chunks: Buffer[] = [];
      for await (const chunk of response) chunks.push(chunk);
      resolve({ status: response.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()), connection: response.headers.connection, answeredAfterEnd: ended });
      request.destroy();
    });
    void (async () => {
      for (const piece of pieces) {
        if (request.destroyed) return;
        if (!request.write(piece)) await drainedOrClosed(request);
        if (pauseMs) await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
      if (end && !request.destroyed) {
        ended = true;
        request.end();
      }
    })();
  });
}

/** Waits for room to write, or for the end of the request, leaving no listener behind. */
function drainedOrClosed(request: http.ClientRequest): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      request.off('drain', done);
      request.off('close', done);
      resolve();
    };
    request.on('drain', done);
    request.on('close', done);
  });
}

function inPieces(body: Buffer, size: number): Buffer[] {
  return Array.from({ length: Math.ceil(body.length / size) }, (_, i) => body.subarray(i * size, (i + 1) * size));
}

// ---- what is stored ----

const indexRows = () => queryIndex<{ sop: string; key: string }>(server, 'SELECT sop_uid AS sop, object_key AS key FROM instances');

const indexedSopUids = async () => (await indexRows()).map((r) => r.sop);

async function expectNoneStored(sopUids: string[]): Promise<void> {
  const indexed = new Set(await indexedSopUids());
  expect(sopUids.filter((uid) => indexed.has(uid))).toEqual([]);
}
// The spool is a local folder whatever the backend: uploads are received there before they go to the store.
const spoolDir = () => path.join(server.dataDir, 'tmp', String(server.process.pid));

/**
 * No index row without its object, no object without its row, nothing in the spool, nothing beside the store in
 * the data folder: no objects/ folder on S3, no index.sqlite on Postgres.
 */
async function expectConsistentStore(): Promise<void> {
  const keys = (await indexRows()).map((r) => r.key);
  expect(await objectKeys(server)).toEqual(keys.sort());
  expect(await fs.readdir(spoolDir())).toEqual([]);
  expect(await fs.readdir(path.join(server.dataDir, 'tmp'))).toEqual([String(server.process.pid)]);
  const local = [...(server.backend.store === 'fs' ? ['objects'] : []), 'tmp', 'secrets', ...(server.backend.index === 'sqlite' ? ['index\\.sqlite(-wal|-shm)?'] : [])];
  const others = (await fs.readdir(server.dataDir)).filter((name) => !new RegExp(`^(${local.join('|')})$`).test(name));
  expect(others).toEqual([]);
}

/** The server's peak resident memory so far (VmHWM). */
async function peakMemory(): Promise<number> {
  const status = await fs.readFile(`/proc/${server.process.pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * KB;
}

/** Runs `action` and checks the server's peak memory grew by less than `bound` while it ran. */
async function withinMemory<T>(bound: number, action: () => Promise<T>): Promise<T> {
  const before = await peakMemory();
  const result = await action();
  expect((await peakMemory()) - before, 'peak memory growth of the server').toBeLessThan(bound);
  return result;
}

async function waitFor(condition: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  for (const started = Date.now(); !(await condition()); ) {
    if (Date.now() - started > ms) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---- the cases ----

describe('STOW-RS refuses a bad instance and stores its neighbours', () => {
  it('refuses a PNG, a text file and an image/png part among good instances', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#c00' } }).png().toBuffer();
    const [a, b] = [goodInstance(), goodInstance()];
    const result = await send([a.bytes, png, Buffer.from('Patient: Doe^Jane\nThis is a referral letter, not an image.\n'), { contentType: 'image/png', body: png }, b.bytes]);
    expect(result.status).toBe(202);
    expect(result.stored).toEqual([a.uid, b.uid]);
    expect(result.failed.map((f) => f.reason)).toEqual([FailureReason.CannotUnderstand, FailureReason.CannotUnderstand, FailureReason.CannotUnderstand]);
    expect(result.failed[0]!.comment).toMatch(/not a DICOM Part 10 file.*"DICM"/);
    expect(result.failed[1]!.comment).toMatch(/not a DICOM Part 10 file.*"DICM"/);
    expect(result.failed[2]!.comment).toMatch(/part 4 is image\/png, not application\/dicom/);
  });

  it('refuses files cut short in the header or in the pixel data, naming where', async () => {
    const { bytes } = goodInstance();
    const patientName = bytes.indexOf(Buffer.from('Doe^Jane'));
    await expectRefusedBesideGood(bytes.subarray(0, patientName + 3), FailureReason.CannotUnderstand, /\(0010,0010\) declares 8 bytes .* past the end of the file .*cut short/);
    await expectRefusedBesideGood(bytes.subarray(0, patientName - 5), FailureReason.CannotUnderstand, /after element \(0008,103E\): the file ends inside an element: it is cut short/);
    await expectRefusedBesideGood(bytes.subarray(0, 140), FailureReason.CannotUnderstand, /meta information has no Transfer Syntax UID \(0002,0010\): the file is cut short/);
    const cut = await expectRefusedBesideGood(bytes.subarray(0, bytes.length - 100), FailureReason.CannotUnderstand, /PixelData declares 512 bytes but the file ends 412 bytes after.*cut short/);
    // Named by the UIDs its meta information gives, so the sender can tell which of its files it was.
    const meta = dicomParser.parseDicom(bytes, { untilTag: 'x00020010' } as dicomParser.ParseDicomOptions);
    expect([cut.sopClassUID, cut.sopInstanceUID]).toEqual([meta.string('x00020002'), meta.string('x00020003')]);
    // The server's log reaches the test through a pipe, maybe after the answer.
    await expect.poll(() => server.logs.some((line) => line.includes('"instance refused"') && line.includes(meta.string('x00020003')!) && line.includes('0xC000'))).toBe(true);
  });

  it('refuses elements and items that declare more bytes than the file holds', async () => {
    const withDocument = syntheticInstance({ rows: 16, columns: 16, extra: [{ tag: '00420011', vr: 'OB', value: Buffer.alloc(64) }] });
    await expectRefusedBesideGood(withDeclaredLength(withDocument, '00420011', 'OB', 100_000), FailureReason.CannotUnderstand, /\(0042,0011\) declares 100000 bytes at offset \d+, past the end of the file/);
    const withName = goodInstance().bytes;
    await expectRefusedBesideGood(withDeclaredLength(withName, '00100010', 'PN', 0xfff0), FailureReason.CannotUnderstand, /\(0010,0010\) declares 65520 bytes/);
    const item = Buffer.concat([element('00400275', 'SQ', Buffer.alloc(0), 0xffffffff), delimiter(0xe000, 0x7ffffff0), element('00400007', 'LO', Buffer.from('CT HEAD ')), delimiter(0xe0dd)]);
    await expectRefusedBesideGood(instanceEndingWith(item), FailureReason.CannotUnderstand, /at element \(0040,0275\) \(offset \d+\): a sequence item declares more bytes than its sequence or the file holds/);
  });

  it('refuses a few-KB file declaring a 4 GB element without allocating it', async () => {
    const withDocument = syntheticInstance({ rows: 16, columns: 16, extra: [{ tag: '00420011', vr: 'OB', value: Buffer.alloc(64) }] });
    const implicit = goodInstance({ transferSyntaxUID: TransferSyntax.ImplicitVRLittleEndian }).bytes;
    const pixels = goodInstance().bytes;
    await withinMemory(64 * MB, async () => {
      const started = Date.now();
      await expectRefusedBesideGood(withDeclaredLength(withDocument, '00420011', 'OB', 0xfffffff0), FailureReason.CannotUnderstand, /\(0042,0011\) declares 4294967280 bytes/);
      await expectRefusedBesideGood(withDeclaredLength(implicit, '00100010', '', 0xfffffff0, 'implicit'), FailureReason.CannotUnderstand, /\(0010,0010\) declares 4294967280 bytes/);
      await expectRefusedBesideGood(withDeclaredLength(pixels, '7FE00010', 'OW', 0xfffffff0), FailureReason.CannotUnderstand, /PixelData declares 4294967280 bytes/);
      expect(Date.now() - started).toBeLessThan(5_000);
    });
  });

  it('refuses a small deflated file that would inflate to half a gigabyte, without inflating it', async () => {
    const bomb = await deflatedInstance(512 * MB);
    expect(bomb.bytes.length).toBeLessThan(MB); // under the instance limit as sent
    const failure = await withinMemory(64 * MB, () => expectRefusedBesideGood(bomb.bytes, FailureReason.OutOfResources, /deflated data set inflates to more than 1 MiB.*PACS_MAX_INSTANCE_BYTES/));
    // Its file meta information, uncompressed before the data set, still names it (PS3.18 Table I.1-1).
    expect(failure).toMatchObject({ sopInstanceUID: bomb.uid, sopClassUID: SECONDARY_CAPTURE });
  });

  it('refuses undefined-length sequences and items that never end', async () => {
    const sequence = element('00400275', 'SQ', Buffer.alloc(0), 0xffffffff);
    const openItem = delimiter(0xe000, 0xffffffff);
    const content = element('00400007', 'LO', Buffer.from('CT HEAD '));
    const missing = /sequence \(0040,0275\).* no (item|sequence) delimiter before the end of the file.*cut short/;
    await expectRefusedBesideGood(instanceEndingWith(Buffer.concat([sequence, openItem, content, delimiter(0xe00d)])), FailureReason.CannotUnderstand, missing);
    await expectRefusedBesideGood(instanceEndingWith(Buffer.concat([sequence, openItem, content])), FailureReason.CannotUnderstand, missing);
    // An unended sequence swallows the pixel data that follows it.
    const { bytes } = goodInstance({ extra: [{ tag: '00400275', vr: 'SQ', value: [[{ tag: '00400007', vr: 'LO', value: 'CT HEAD' }]] }] });
    const sequenceEnd = bytes.indexOf(delimiter(0xe0dd));
    const unended = Buffer.concat([bytes.subarray(0, sequenceEnd), bytes.subarray(sequenceEnd + 8)]);
    await expectRefusedBesideGood(unended, FailureReason.CannotUnderstand, /\(0040,0275\)|item tag/);
    // Only sequences and pixel data may have undefined length; an OB that does would swallow the rest of the file.
    const withDocument = syntheticInstance({ rows: 16, columns: 16, extra: [{ tag: '00420011', vr: 'OB', value: Buffer.alloc(64) }] });
    await expectRefusedBesideGood(withDeclaredLength(withDocument, '00420011', 'OB', 0xffffffff), FailureReason.CannotUnderstand, /\(0042,0011\) has undefined length/);
  });

  it('refuses sequences nested 100 and 5000 deep without overflowing its stack', async () => {
    const nested = (depth: number) => {
      const open = Buffer.concat([element('00400275', 'SQ', Buffer.alloc(0), 0xffffffff), delimiter(0xe000, 0xffffffff)]);
      const close = Buffer.concat([delimiter(0xe00d), delimiter(0xe0dd)]);
      return instanceEndingWith(Buffer.concat([...Array<Buffer>(depth).fill(open), ...Array<Buffer>(depth).fill(close)]));
    };
    await withinMemory(64 * MB, async () => {
      for (const depth of [100, 5000]) await expectRefusedBesideGood(nested(depth), FailureReason.CannotUnderstand, /sequences are nested more than 64 deep/);
    });
  });

  it('refuses missing and malformed UIDs, naming the attribute and the value', async () => {
    const cases: Array<[Parameters<typeof syntheticInstance>[0], RegExp]> = [
      [{ sopInstanceUID: '' }, /SOPInstanceUID \(0008,0018\) is missing/],
      [{ sopInstanceUID: '1.2.840.abc' }, /SOPInstanceUID \(0008,0018\) "1\.2\.840\.abc" is not a valid DICOM UID/],
      [{ studyUID: '1.2.0840.1' }, /StudyInstanceUID \(0020,000D\) "1\.2\.0840\.1" is not a valid DICOM UID .*no leading zeros/],
      [{ seriesUID: `1.2.${'3'.repeat(62)}` }, /SeriesInstanceUID \(0020,000E\) "1\.2\.3{62}" is not a valid DICOM UID .*at most 64 characters/],
    ];
    for (const [uids, comment] of cases) {
      await expectRefusedBesideGood(syntheticInstance({ rows: 16, columns: 16, ...uids }), FailureReason.CannotUnderstand, comment);
    }
  });

  it('refuses UIDs that would leave their folder, and writes nothing outside the store', async () => {
    const escape = `pacs-escape-${process.pid}-${Date.now()}`;
    const cases: Array<[Parameters<typeof syntheticInstance>[0], RegExp]> = [
      [{ studyUID: '../../etc' }, /StudyInstanceUID \(0020,000D\) "\.\.\/\.\.\/etc" is not a valid DICOM UID/],
      [{ studyUID: '1.2/../../x' }, /StudyInstanceUID \(0020,000D\) "1\.2\/\.\.\/\.\.\/x" is not a valid DICOM UID/],
      [{ studyUID: `../../../${escape}` }, /StudyInstanceUID/],
      [{ seriesUID: `../../../../../${escape}` }, /SeriesInstanceUID/],
      [{ sopInstanceUID: `../../../../../../../${escape}` }, /SOPInstanceUID/],
    ];
    for (const [uids, comment] of cases) {
      await expectRefusedBesideGood(syntheticInstance({ rows: 16, columns: 16, ...uids }), FailureReason.CannotUnderstand, comment);
    }
    await expect(fs.access(path.join(path.dirname(server.dataDir), escape))).rejects.toThrow();
    await expect(fs.access(path.join(server.dataDir, 'etc'))).rejects.toThrow();

    const before = (await indexRows()).length;
    const { body, contentType } = stowBody([goodInstance().bytes]);
    const response = await adminFetch(`${server.dicomweb}/studies/..%2F..%2Fetc`, { method: 'POST', headers: { 'Content-Type': contentType }, body: new Uint8Array(body) });
    expect(response.status).toBe(400);
    expect(await response.json()).toMatchObject({ error: 'bad-request', detail: expect.stringMatching(/StudyInstanceUID in the URL "\.\.\/\.\.\/etc" is not a valid DICOM UID/) });
    expect(await indexRows()).toHaveLength(before);
  });

  it('refuses an instance of another study than the URL names, and stores its neighbours', async () => {
    const study = newUid();
    const stranger = goodInstance();
    const failure = await expectRefusedBesideGood(stranger.bytes, FailureReason.DataSetDoesNotMatch, new RegExp(`StudyInstanceUID \\S+ is not the study ${study} named in the URL`), study);
    expect(failure.sopInstanceUID).toBe(stranger.uid);
    await expectNoneStored([stranger.uid]);
  });
});

describe('STOW-RS reads a body to its end before answering', () => {
  it('keeps the connection open when the closing boundary and the end of a chunked body arrive late', async () => {
    const a = goodInstance();
    const { body, contentType } = stowBody([a.bytes]);
    // The closing "--", its CRLF and the chunked body's last chunk each come after a pause.
    const closeAt = body.lastIndexOf(Buffer.from('--\r\n'));
    const answer = await postInPieces([body.subarray(0, closeAt), body.subarray(closeAt, closeAt + 2), body.subarray(closeAt + 2)], { 'Content-Type': contentType }, true, 150);
    expect(answer.status).toBe(200);
    expect(answer.answeredAfterEnd).toBe(true);
    expect(answer.connection).not.toBe('close');
  });
});

describe('STOW-RS holds uploads to the size limits', () => {
  it('answers 413 to a Content-Length over PACS_MAX_REQUEST_BYTES without waiting for the body', async () => {
    const { contentType } = stowBody([]);
    const started = Date.now();
    const answer = await postInPieces([Buffer.alloc(64 * KB)], { 'Content-Type': contentType, 'Content-Length': String(5 * 1024 * MB) }, false);
    expect(answer.status).toBe(413);
    expect(answer.body).toMatchObject({ error: 'too-large', detail: expect.stringMatching(/5 GiB.*larger than the 2 MiB limit \(PACS_MAX_REQUEST_BYTES\).*fewer instances per request/) });
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('answers 413 to a chunked body once it passes PACS_MAX_REQUEST_BYTES, storing none of it', async () => {
    const good = goodInstance();
    const fillers = Array.from({ length: 3 }, () => goodInstance({ rows: 600, columns: 600 }).bytes); // 700 KB each
    const { body, contentType } = stowBody([good.bytes, ...fillers]);
    expect(body.length).toBeGreaterThan(2 * MB);
    const answer = await postInPieces(inPieces(body, 64 * KB), { 'Content-Type': contentType });
    expect(answer.status).toBe(413);
    expect(answer.body).toMatchObject({ error: 'too-large', detail: expect.stringMatching(/larger than the 2 MiB limit \(PACS_MAX_REQUEST_BYTES\).*nothing was stored/) });
    await expectNoneStored([good.uid]);
  });

  it('refuses one instance over PACS_MAX_INSTANCE_BYTES with 0xA700, naming it, and stores the others', async () => {
    const big = goodInstance({ rows: 800, columns: 800 }); // 1.25 MB
    expect(big.bytes.length).toBeGreaterThan(MB);
    const failure = await expectRefusedBesideGood(big.bytes, FailureReason.OutOfResources, /larger than the 1 MiB limit \(PACS_MAX_INSTANCE_BYTES\)/);
    // Read from its file meta information, the first bytes of the part (PS3.18 Table I.1-1 wants both UIDs).
    expect(failure).toMatchObject({ sopInstanceUID: big.uid, sopClassUID: CT_IMAGE });
    await expectNoneStored([big.uid]);
  });

  it('refuses an instance over PACS_MAX_INSTANCE_BYTES inside a chunked body alone; its neighbours are stored whole', async () => {
    const [before, big, after] = [goodInstance(), goodInstance({ rows: 800, columns: 800 }), goodInstance()];
    const { body, contentType } = stowBody([before.bytes, big.bytes, after.bytes]);
    const answer = await postInPieces(inPieces(body, 16 * KB), { 'Content-Type': contentType, Accept: 'application/dicom+json' });
    const result = stowResult(answer.status, answer.body);
    expect(result.status, JSON.stringify(result.body)).toBe(202);
    expect(result.stored).toEqual([before.uid, after.uid]);
    expect(result.failed).toEqual([{ sopClassUID: CT_IMAGE, sopInstanceUID: big.uid, reason: FailureReason.OutOfResources, comment: expect.stringMatching(/larger than the 1 MiB limit \(PACS_MAX_INSTANCE_BYTES\)/) }]);
    // Each neighbour comes back byte for byte from the RetrieveURL the answer gave.
    const urls: string[] = answer.body['00081199'].Value.map((i: any) => i['00081190'].Value[0]);
    for (const [i, sent] of [before, after].entries()) {
      const response = await adminFetch(urls[i]!, { headers: { Accept: 'multipart/related; type="application/dicom"' } });
      expect(response.status).toBe(200);
      const parts = await readMultipartResponse(response);
      expect(parts.map((p) => p.body.equals(sent.bytes))).toEqual([true]);
    }
    await expectNoneStored([big.uid]);
  });

  it('refuses a deflated instance over PACS_MAX_INSTANCE_BYTES as sent alone, naming it', async () => {
    const big = await deflatedInstance(1.25 * MB, randomBytes(256 * KB)); // noise: as large deflated
    expect(big.bytes.length).toBeGreaterThan(MB);
    const failure = await expectRefusedBesideGood(big.bytes, FailureReason.OutOfResources, /larger than the 1 MiB limit \(PACS_MAX_INSTANCE_BYTES\)/);
    expect(failure).toMatchObject({ sopInstanceUID: big.uid, sopClassUID: SECONDARY_CAPTURE });
    await expectNoneStored([big.uid]);
  });
});

describe('STOW-RS refuses a broken multipart body whole', () => {
  const good = () => goodInstance();

  async function expectRefused(contentType: string, body: Buffer, status: number, error: string, detail: RegExp, notStored: string[]) {
    const response = await adminFetch(`${server.dicomweb}/studies`, { method: 'POST', headers: { 'Content-Type': contentType }, body: new Uint8Array(body), signal: AbortSignal.timeout(15_000) });
    expect(response.status).toBe(status);
    expect(response.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await response.json()).toMatchObject({ error, detail: expect.stringMatching(detail) });
    await expectNoneStored(notStored);
  }

  it('answers 415 to a multipart/related Content-Type without a boundary', async () => {
    const a = good();
    const { body } = stowBody([a.bytes]);
    await expectRefused('multipart/related; type="application/dicom"', body, 415, 'unsupported-media-type', /no boundary parameter; send multipart\/related; type="application\/dicom"; boundary=/, [a.uid]);
  });

  it('answers 400 to a body framed with another boundary than its Content-Type names', async () => {
    const a = good();
    const { body } = stowBody([a.bytes], 'the-real-boundary');
    await expectRefused('multipart/related; type="application/dicom"; boundary=another-boundary', body, 400, 'bad-multipart', /no line with the boundary its Content-Type names; nothing was stored/, [a.uid]);
  });

  it('answers 400 to a body that ends without its closing boundary, storing none of its parts', async () => {
    const [a, b] = [good(), good()];
    const { body, contentType } = stowBody([a.bytes, b.bytes]);
    const cut = body.subarray(0, body.lastIndexOf(Buffer.from('\r\n--')));
    await expectRefused(contentType, cut, 400, 'bad-multipart', /ends inside a part, before its closing boundary.*cut short.*nothing was stored/, [a.uid, b.uid]);
    const unclosed = body.subarray(0, body.length - '--\r\n'.length);
    await expectRefused(contentType, unclosed, 400, 'bad-multipart', /ends without its closing boundary.*nothing was stored/, [a.uid, b.uid]);
  });

  it('answers 400 to part headers that are not headers', async () => {
    const [a, b] = [good(), good()];
    const { body, contentType } = stowBody([a.bytes, b.bytes], 'bnd');
    const second = body.indexOf('--bnd\r\nContent-Type', 10);
    const garbage = Buffer.concat([body.subarray(0, second), Buffer.from('--bnd\r\n\x00\x01 not a header at all\r\n\r\n'), body.subarray(body.indexOf('\r\n\r\n', second) + 4)]);
    await expectRefused(contentType, garbage, 400, 'bad-multipart', /a part header is not "Name: value".*nothing was stored/, [a.uid, b.uid]);
  });
});

describe('STOW-RS and a client that goes away', () => {
  it('stores nothing and cleans its spool when the client disconnects mid-upload', async () => {
    const [a, b] = [goodInstance(), goodInstance({ rows: 500, columns: 500 })];
    const { body, contentType } = stowBody([a.bytes, b.bytes]);
    const request = http.request(`${server.dicomweb}/studies`, { method: 'POST', headers: { ...AS_ADMIN, 'Content-Type': contentType, 'Content-Length': String(body.length) } });
    request.on('error', () => {}); // we are the ones hanging up
    // An answer before the hang-up (a refusal) would leave the wait below nothing to see: it fails the test by name.
    let answered: string | undefined;
    request.on('response', (response) => (answered = `HTTP ${response.statusCode}`));
    request.write(body.subarray(0, body.length / 2));
    // The server is receiving: the first instance is in the spool, or already moved into the store uncommitted.
    const indexed = (await indexRows()).length;
    // Generous: on a loaded machine the half body may take a while to be read; nothing here depends on its speed.
    await waitFor(async () => {
      if (answered) throw new Error(`the server answered before the client hung up: ${answered}`);
      return (await fs.readdir(spoolDir())).length > 0 || (await objectKeys(server)).length > indexed;
    }, 'the first instance is received', 60_000);
    request.destroy();
    await waitFor(async () => (await fs.readdir(spoolDir())).length === 0 && (await objectKeys(server)).length === indexed, 'the spool and the store are cleaned');
    await expectNoneStored([a.uid, b.uid]);
    await expectConsistentStore();
  }, 120_000);
});
