/**
 * Bulk data and deflated frames against file size (issue 11): how long a 64 KB overlay takes to fetch by its
 * BulkDataURI when the attributes around it take 1, 16 or 60 MB, and a frame of a deflated multi-frame instance,
 * first call and later ones. Reads that re-parse or re-inflate the file grow with it; ranged reads do not.
 *
 *   npx tsx bench/bulk-data.ts [source tree, default this one]
 *
 * Needs dcmtk's dcmconv for the deflated instance. PACS-lite only, fs + SQLite, on loopback.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { newUid } from '../src/dicom/write.js';
import { syntheticInstance } from '../test/fixtures/synthetic.js';
import { multipartParts, request, type Reply } from './http.js';
import { randomAdminKey } from './pacs-lite.js';
import { freePort, spawnServer } from './server-process.js';

const CALLS = 15;
const HEADER_MB = [1, 16, 60];
const DEFLATED_FRAMES = 40;
const root = path.resolve(process.argv[2] ?? path.join(import.meta.dirname, '..'));

const work = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-bulk-'));
const adminKey = randomAdminKey();
const port = await freePort();
const server = await spawnServer({
  command: process.execPath,
  args: ['--import', 'tsx', path.join(root, 'src/main.ts')],
  cwd: root,
  env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PACS_STORAGE_DIR: path.join(work, 'data'), PACS_LOG_LEVEL: 'warn', PACS_ADMIN_KEY: adminKey, PACS_VERIFY_INTERVAL: 'off', PACS_DICOM_PORT: '0' },
  logFile: path.join(work, 'server.log'),
  readyUrl: `http://127.0.0.1:${port}/healthz`,
});
const dicomweb = `http://127.0.0.1:${port}/dicom-web`;
const auth = { Authorization: `Bearer ${adminKey}` };

async function stow(file: Buffer): Promise<void> {
  const boundary = `b-${randomBytes(8).toString('hex')}`;
  const body = [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from(`\r\n--${boundary}--\r\n`)];
  const reply = await request(`${dicomweb}/studies`, { method: 'POST', headers: { ...auth, 'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}` }, body });
  if (reply.status !== 200) throw new Error(`STOW answered ${reply.status}: ${reply.body.toString().slice(0, 300)}`);
}

/** Milliseconds of each call, checked against the bytes expected. */
async function timed(url: string, accept: string, calls: number, check: (reply: Reply) => boolean): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < calls; i++) {
    const reply = await request(url, { headers: { ...auth, Accept: accept } });
    if (reply.status !== 200 || !check(reply)) throw new Error(`${url} answered ${reply.status} with other bytes than stored`);
    times.push(reply.ms);
  }
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const lines: string[] = [];

try {
  for (const mb of HEADER_MB) {
    const studyUID = newUid();
    const seriesUID = newUid();
    const sop = newUid();
    const overlay = randomBytes(64 * 1024);
    // Private values before the overlay and after it: what a read that parses the attributes has to get through.
    const filler = randomBytes(mb * 1024 * 1024 / 2);
    await stow(
      syntheticInstance({
        studyUID, seriesUID, sopInstanceUID: sop,
        extra: [
          { tag: '00090010', vr: 'LO', value: 'PACSLITE BENCH' },
          { tag: '00091001', vr: 'OB', value: filler },
          { tag: '00091002', vr: 'OB', value: filler },
          { tag: '60003000', vr: 'OW', value: overlay },
        ],
      }),
    );
    const url = `${dicomweb}/studies/${studyUID}/series/${seriesUID}/instances/${sop}/bulkdata/60003000`;
    const times = await timed(url, 'application/octet-stream', CALLS, (reply) => reply.body.equals(overlay));
    lines.push(`| overlay of 64 KB, attributes of ${mb} MB | ${median(times).toFixed(1)} ms | ${Math.max(...times).toFixed(1)} ms |`);
  }

  const studyUID = newUid();
  const seriesUID = newUid();
  const twin = newUid();
  const deflatedUID = newUid();
  const of = (sop: string) => syntheticInstance({ studyUID, seriesUID, sopInstanceUID: sop, frames: DEFLATED_FRAMES, rows: 512, columns: 512 });
  await fs.writeFile(path.join(work, 'in.dcm'), of(deflatedUID));
  execFileSync('dcmconv', ['-q', '+td', path.join(work, 'in.dcm'), path.join(work, 'deflated.dcm')]);
  const deflated = await fs.readFile(path.join(work, 'deflated.dcm'));
  await stow(of(twin));
  await stow(deflated);
  const frame = (sop: string) => `${dicomweb}/studies/${studyUID}/series/${seriesUID}/instances/${sop}/frames/${DEFLATED_FRAMES}`;
  const accept = 'multipart/related; type="application/octet-stream"; transfer-syntax=*';
  const [expected] = multipartParts(await request(frame(twin), { headers: { ...auth, Accept: accept } }));
  const same = (reply: Reply) => multipartParts(reply)[0]!.equals(expected!);
  const [first] = await timed(frame(deflatedUID), accept, 1, same);
  const later = await timed(frame(deflatedUID), accept, CALLS, same);
  const plain = await timed(frame(twin), accept, CALLS, same);
  const size = (deflated.length / 1e6).toFixed(1);
  lines.push(`| deflated ${DEFLATED_FRAMES}-frame instance (${size} MB stored, ${(of(twin).length / 1e6).toFixed(1)} MB inflated), frame ${DEFLATED_FRAMES}: first call | ${first!.toFixed(1)} ms | |`);
  lines.push(`| the same frame, later calls | ${median(later).toFixed(1)} ms | ${Math.max(...later).toFixed(1)} ms |`);
  lines.push(`| the same frame of its undeflated twin | ${median(plain).toFixed(1)} ms | ${Math.max(...plain).toFixed(1)} ms |`);
  console.log(`\nPACS-lite from ${root}, ${CALLS} calls a line\n\n| what | median | slowest |\n|---|---|---|\n${lines.join('\n')}`);
} finally {
  await server.stop();
  await fs.rm(work, { recursive: true, force: true });
}
