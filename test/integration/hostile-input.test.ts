import { once } from 'node:events';
import fs from 'node:fs/promises';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TransferSyntax } from '../../src/dicom/transfer-syntax.js';
import { newUid, writePart10 } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { adminFetch, startServer, stowBody, type RunningServer } from '../helpers/server.js';
import { objectKeys, readObject } from '../helpers/stored.js';
import { delimiter, element } from '../fixtures/raw-elements.js';

/**
 * Uploads built to hurt (issue 10): a deflate bomb, a data set trailed by 100 MB of zeros, malformed delimiters,
 * 100,000 empty parts, a UID with a NUL inside, an executable in the preamble. Each is refused with a reason (or,
 * for the executable, stored and audited) while /healthz keeps answering. Latency and memory are printed, and only
 * held to generous bounds: speed belongs to the bench.
 */

const MB = 1024 * 1024;
const FailureReason = { OutOfResources: 0xa700, CannotUnderstand: 0xc000 };
const SECONDARY_CAPTURE = '1.2.840.10008.5.1.4.1.1.7';
/** 4096 × 4096 at 16 bits. */
const FRAME_BYTES = 4096 * 4096 * 2;

let server: RunningServer;

// The default limits: the bomb is refused by what the server holds in memory, not by a small PACS_MAX_INSTANCE_BYTES.
beforeAll(async () => {
  server = await startServer();
});
afterAll(async () => {
  await server?.stop();
});

function uidValue(uid: string): Buffer {
  return Buffer.from(uid.length % 2 ? `${uid}\0` : uid, 'latin1');
}

/** The UID elements every instance needs, then `middle`, then the study and series UIDs (tags ascend). */
function dataSet(sopInstanceUID: string, middle: Buffer = Buffer.alloc(0)): Buffer {
  return Buffer.concat([
    element('00080016', 'UI', uidValue(SECONDARY_CAPTURE)),
    element('00080018', 'UI', uidValue(sopInstanceUID)),
    middle,
    element('0020000D', 'UI', uidValue(newUid())),
    element('0020000E', 'UI', uidValue(newUid())),
  ]);
}

function part10(sopInstanceUID: string, body: Buffer, transferSyntaxUID: string = TransferSyntax.ExplicitVRLittleEndian): Buffer {
  return Buffer.concat([writePart10([], { transferSyntaxUID, sopClassUID: SECONDARY_CAPTURE, sopInstanceUID }), body]);
}

/**
 * A Deflated Explicit VR Little Endian file whose data set inflates to about `inflatedBytes`: the UIDs, then `zeros`
 * bytes of zeros in `where` (a private OB element before the pixel data, or the pixel data itself).
 */
async function deflated(zeros: number, where: 'private-element' | 'pixel-data'): Promise<{ uid: string; bytes: Buffer }> {
  const uid = newUid();
  const image = [element('00280010', 'US', Buffer.from([0x00, 0x10])), element('00280011', 'US', Buffer.from([0x00, 0x10]))];
  const head =
    where === 'private-element'
      ? Buffer.concat([dataSet(uid), element('00290010', 'LO', Buffer.from('HOSTILE ')), element('00291000', 'OB', Buffer.alloc(0), zeros)])
      : Buffer.concat([
          dataSet(uid),
          element('00280002', 'US', Buffer.from([1, 0])),
          element('00280004', 'CS', Buffer.from('MONOCHROME2 ')),
          element('00280008', 'IS', Buffer.from(`${zeros / FRAME_BYTES} `.padEnd(2, ' ').slice(0, 2))),
          ...image,
          element('00280100', 'US', Buffer.from([16, 0])),
          element('00280101', 'US', Buffer.from([16, 0])),
          element('00280102', 'US', Buffer.from([15, 0])),
          element('00280103', 'US', Buffer.from([0, 0])),
          element('7FE00010', 'OW', Buffer.alloc(0), zeros),
        ]);
  const deflate = zlib.createDeflateRaw({ level: 9 });
  const out: Buffer[] = [];
  deflate.on('data', (c: Buffer) => out.push(c));
  deflate.write(head);
  const chunk = Buffer.alloc(MB);
  for (let sent = 0; sent < zeros; sent += chunk.length) if (!deflate.write(chunk.subarray(0, Math.min(chunk.length, zeros - sent)))) await once(deflate, 'drain');
  deflate.end();
  await once(deflate, 'end');
  return { uid, bytes: part10(uid, Buffer.concat(out), TransferSyntax.DeflatedExplicitVRLittleEndian) };
}

type Failure = { reason: number; comment: string };
type Stow = { status: number; headers: Headers; body: any; stored: string[]; failed: Failure[] };

function send(parts: Buffer[]): Promise<Stow> {
  return post(stowBody(parts));
}

/** A STOW-RS request of a body built beforehand, so that building it does not stall this process's /healthz polling. */
async function post({ body, contentType }: { body: Buffer; contentType: string }): Promise<Stow> {
  const response = await adminFetch(`${server.dicomweb}/studies`, {
    method: 'POST',
    headers: { 'Content-Type': contentType, Accept: 'application/dicom+json' },
    body: new Uint8Array(body),
    signal: AbortSignal.timeout(50_000),
  });
  const json: any = await response.json();
  return {
    status: response.status,
    headers: response.headers,
    body: json,
    stored: (json['00081199']?.Value ?? []).map((i: any) => i['00081155'].Value[0]),
    failed: (json['00081198']?.Value ?? []).map((i: any) => ({ reason: i['00081197'].Value[0], comment: i['00000902'].Value[0] })),
  };
}

/** The server's resident memory now and at its peak (VmRSS, VmHWM), from /proc. */
async function memory(): Promise<{ rss: number; peak: number }> {
  const status = await fs.readFile(`/proc/${server.process.pid}/status`, 'utf8');
  const kb = (name: string) => Number(new RegExp(`${name}:\\s+(\\d+) kB`).exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

/**
 * Runs `upload` while asking /healthz every 50 ms; resolves with its answer, the /healthz latencies seen while it was
 * in flight, and the growth of the server's peak memory. Each /healthz waits for the previous one, so a blocked event
 * loop shows as one long latency rather than as many queued ones.
 */
async function whileHealthzPolled<T>(name: string, upload: () => Promise<T>): Promise<{ result: T; latencies: number[] }> {
  const before = await memory();
  let done = false;
  const latencies: number[] = [];
  const poll = (async () => {
    while (!done) {
      const started = performance.now();
      const response = await fetch(`${server.url}/healthz`, { signal: AbortSignal.timeout(30_000) });
      await response.arrayBuffer();
      if (!done) latencies.push(performance.now() - started);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const started = performance.now();
  const result = await upload().finally(() => {
    done = true;
  });
  const took = performance.now() - started;
  await poll;
  const after = await memory();
  const sorted = [...latencies].sort((a, b) => a - b);
  console.log(
    `${name}: answered in ${took.toFixed(0)} ms; /healthz answered ${latencies.length} times meanwhile, ` +
      `median ${(sorted[Math.floor(sorted.length / 2)] ?? 0).toFixed(1)} ms, max ${(sorted.at(-1) ?? 0).toFixed(1)} ms; ` +
      `server RSS ${(after.rss / MB).toFixed(0)} MB, peak ${(after.peak / MB).toFixed(0)} MB (grew ${((after.peak - before.peak) / MB).toFixed(0)} MB)`,
  );
  expect(after.peak - before.peak, 'peak memory growth of the server').toBeLessThan(400 * MB);
  return { result, latencies };
}

describe('hostile uploads', () => {
  it('refuses a 400 MB deflate bomb with 0xA700, inflating it as a stream while /healthz answers', async () => {
    const bomb = await deflated(400 * MB, 'private-element');
    console.log(`deflate bomb: ${(bomb.bytes.length / 1024).toFixed(0)} KB sent, inflating to 400 MB`);
    const { result, latencies } = await whileHealthzPolled('deflate bomb', () => send([bomb.bytes]));
    expect(result.status, JSON.stringify(result.body)).toBe(409);
    expect(result.failed).toEqual([{ reason: FailureReason.OutOfResources, comment: expect.stringMatching(/attributes before the pixel data inflate to more than 64 MiB/) }]);
    expect(latencies.length, '/healthz answered while the bomb was being refused').toBeGreaterThan(0);
  });

  it('stores a deflated instance whose pixel data inflate to 96 MB, counting them without holding them', async () => {
    const image = await deflated(3 * FRAME_BYTES, 'pixel-data');
    const { result, latencies } = await whileHealthzPolled('deflated 96 MB image', () => send([image.bytes]));
    expect(result.status, JSON.stringify(result.body)).toBe(200);
    expect(result.stored).toEqual([image.uid]);
    expect(latencies.length, '/healthz answered while it was inflated').toBeGreaterThan(0);
  });

  it('refuses a data set followed by 100 MB of zeros at the first zero, with the tag it stopped at', async () => {
    const uid = newUid();
    const request = stowBody([Buffer.concat([part10(uid, dataSet(uid)), Buffer.alloc(100 * MB)])]);
    const { result } = await whileHealthzPolled('100 MB of zeros', () => post(request));
    expect(result.status, JSON.stringify(result.body)).toBe(409);
    expect(result.failed).toEqual([
      { reason: FailureReason.CannotUnderstand, comment: expect.stringMatching(/\(0000,0000\) at offset \d+ follows \(0020,000E\): the tags of a data set ascend/) },
    ]);
  });

  it('refuses a header of more than 250,000 elements with 0xA700 before dicom-parser builds them', async () => {
    const elements = (n: number) => {
      const bytes = Buffer.alloc(n * 8);
      for (let i = 0; i < n; i++) {
        // Empty private elements of groups 0009, 000B, ... in ascending order, between the SOP and study UIDs.
        bytes.writeUInt16LE(0x0009 + 2 * Math.floor(i / 0xf000), i * 8);
        bytes.writeUInt16LE(0x1000 + (i % 0xf000), i * 8 + 2);
        bytes.write('LO', i * 8 + 4, 'latin1');
      }
      return bytes;
    };
    const tooMany = newUid();
    const refused = stowBody([part10(tooMany, dataSet(tooMany, elements(250_001)))]);
    const { result } = await whileHealthzPolled('250,001 elements', () => post(refused));
    expect(result.failed).toEqual([{ reason: FailureReason.OutOfResources, comment: expect.stringMatching(/more than 250,000 elements, more than this server reads in one header/) }]);
    // The most a header may hold is read, in one synchronous parse: the figure printed is the longest stall it causes.
    const most = newUid();
    const accepted = stowBody([part10(most, dataSet(most, elements(249_990)))]);
    const { result: stored } = await whileHealthzPolled('249,990 elements', () => post(accepted));
    expect(stored.stored).toEqual([most]);
  });

  it('refuses item and sequence delimiters that declare a length', async () => {
    const sequence = (itemDelimiterLength: number, sequenceDelimiterLength: number) =>
      element('00081115', 'SQ', Buffer.concat([delimiter(0xe000, 0xffffffff), element('00081150', 'UI', uidValue(SECONDARY_CAPTURE)), delimiter(0xe00d, itemDelimiterLength), delimiter(0xe0dd, sequenceDelimiterLength)]), 0xffffffff);
    const files = [
      [sequence(4, 0), /an item delimiter \(FFFE,E00D\) at offset \d+ declares a length of 4; a delimiter has none/],
      [sequence(0, 8), /a sequence delimiter \(FFFE,E0DD\) at offset \d+ declares a length of 8; a delimiter has none/],
    ] as const;
    for (const [middle, reason] of files) {
      const uid = newUid();
      const result = await send([part10(uid, dataSet(uid, middle))]);
      expect(result.failed).toEqual([{ reason: FailureReason.CannotUnderstand, comment: expect.stringMatching(reason) }]);
    }
    // The same sequence with zero-length delimiters is stored.
    const uid = newUid();
    expect((await send([part10(uid, dataSet(uid, sequence(0, 0)))])).stored).toEqual([uid]);
  });

  it('answers 413 to 100,000 empty parts once the 10,001st begins, and fails a few empty parts cheaply', async () => {
    const { body, contentType } = stowBody(Array.from({ length: 100_000 }, () => Buffer.alloc(0)));
    console.log(`100,000 empty parts: a body of ${(body.length / MB).toFixed(1)} MB`);
    const { result: response } = await whileHealthzPolled('100,000 empty parts', async () => {
      const r = await adminFetch(`${server.dicomweb}/studies`, { method: 'POST', headers: { 'Content-Type': contentType }, body: new Uint8Array(body), signal: AbortSignal.timeout(50_000) });
      return { status: r.status, text: await r.text() };
    });
    expect(response.status).toBe(413);
    expect(JSON.parse(response.text)).toEqual({ error: 'too-many-parts', detail: expect.stringMatching(/more than 10000 parts \(PACS_MAX_PARTS_PER_REQUEST\); nothing was stored/) });

    const uid = newUid();
    const result = await send([Buffer.alloc(0), part10(uid, dataSet(uid)), Buffer.alloc(0)]);
    expect(result.status).toBe(202);
    expect(result.stored).toEqual([uid]);
    expect(result.failed).toEqual([0, 1].map(() => ({ reason: FailureReason.CannotUnderstand, comment: 'the part is empty: it holds no DICOM file' })));
    // No file was opened for them: the spool holds nothing.
    expect(await fs.readdir(`${server.dataDir}/tmp/${server.process.pid}`)).toEqual([]);
  });

  it('refuses a UID and a patient name with a NUL inside, and takes a UID padded with one trailing NUL', async () => {
    const base = newUid();
    const withNul = `${base}\0.4`;
    const nulUid = await send([syntheticInstance({ rows: 4, columns: 4, sopInstanceUID: withNul })]);
    expect(nulUid.failed).toEqual([
      { reason: FailureReason.CannotUnderstand, comment: expect.stringMatching(/SOPInstanceUID \(0008,0018\) ".*\\0\.4" is not a valid DICOM UID .*a NUL may only pad its end/) },
    ]);
    const cut = await adminFetch(`${server.dicomweb}/instances?SOPInstanceUID=${base}`);
    expect(cut.status === 204 || (await cut.json()).length === 0, 'nothing is indexed under the UID cut at its NUL').toBe(true);

    const nulName = await send([syntheticInstance({ rows: 4, columns: 4, patientName: 'Doe^Jane\0Evil' })]);
    expect(nulName.failed).toEqual([{ reason: FailureReason.CannotUnderstand, comment: expect.stringMatching(/PatientName \(0010,0010\) holds a NUL byte inside its value "Doe\^Jane\\0Evil"/) }]);

    const odd = newUid().slice(0, 41); // an odd length: written with one trailing NUL
    expect(odd.length % 2).toBe(1);
    expect((await send([syntheticInstance({ rows: 4, columns: 4, sopInstanceUID: odd })])).stored).toEqual([odd]);
  });

  it('stores an instance with an executable header in its preamble as sent, warns the client and audits it', async () => {
    const uid = newUid();
    const file = syntheticInstance({ rows: 4, columns: 4, sopInstanceUID: uid });
    file.write('MZ', 0, 'latin1');
    const result = await send([file]);
    expect(result.stored).toEqual([uid]);
    expect(result.headers.get('warning')).toMatch(new RegExp(`^199 pacs-lite ".*instance ${uid.replaceAll('.', '\\.')} holds an executable header in its preamble \\(PE`));
    const key = (await objectKeys(server)).find((k) => k.includes(`/instances/${uid}_`))!;
    expect((await readObject(server, key)).equals(file), 'the bytes are kept as sent').toBe(true);
    const audit: any[] = await (await adminFetch(`${server.url}/api/v1/audit?limit=50`)).json();
    expect(audit).toContainEqual(expect.objectContaining({ sopUid: uid, method: 'POST', query: expect.stringMatching(/^alert=executable-preamble&format=PE/) }));
    await expect.poll(() => server.logs.some((line) => line.includes('"level":40') && line.includes(uid) && line.includes('executable'))).toBe(true);
  });
});
