import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { newUid } from '../../src/dicom/write.js';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { cli } from '../helpers/cli.js';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';
import { indexRows, objectKeys } from '../helpers/stored.js';

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const sopUidOf = (json: any): string => json['00080018'].Value[0];

/**
 * Uploads series of six instances from several clients at once until the server goes away (or a bound is
 * reached) and records which instances it acknowledged: a 200 means they are durable (DESIGN decision 2).
 */
function uploadUntilKilled(server: RunningServer, sent: Map<string, Buffer>, clients: number) {
  const acknowledged = new Set<string>();
  let inFlight = 0;
  let firstAck: () => void;
  const firstAcknowledged = new Promise<void>((resolve) => (firstAck = resolve));
  let killed = false;
  const client = async () => {
    for (let round = 0; round < 200 && !killed; round++) {
      const ids = { studyUID: newUid(), seriesUID: newUid(), rows: 256, columns: 256, patientName: 'Crash^Test' };
      const batch = Array.from({ length: 6 }, (_, i) => {
        const sopInstanceUID = newUid();
        const bytes = syntheticInstance({ ...ids, sopInstanceUID, instanceNumber: i + 1 });
        sent.set(sopInstanceUID, bytes);
        return bytes;
      });
      inFlight++;
      try {
        const response = await stow(server.dicomweb, batch);
        if (response.status !== 200) throw new Error(`STOW answered ${response.status}: ${await response.text()}`);
        for (const item of (await response.json())['00081199'].Value) acknowledged.add(item['00081155'].Value[0]);
        firstAck();
      } catch (e) {
        // The server was killed: this request is unacknowledged, so it may be lost.
        if (killed) return;
        throw e;
      } finally {
        inFlight--;
      }
    }
  };
  const done = Promise.all(Array.from({ length: clients }, client));
  /** kill -9 now; resolves with the number of uploads that were in flight at that moment. */
  const kill = async () => {
    killed = true;
    const busy = inFlight;
    await server.kill9();
    await done;
    return busy;
  };
  return { acknowledged, firstAcknowledged, kill };
}

describe('durability', () => {
  const dataDir = fs.mkdtemp(path.join(os.tmpdir(), 'pacs-durable-'));
  /** Every instance sent, by SOP Instance UID. */
  const sent = new Map<string, Buffer>();
  const acknowledged = new Set<string>();
  let server: RunningServer | undefined;

  afterAll(async () => {
    await server?.stop();
    await fs.rm(await dataDir, { recursive: true, force: true });
  });

  it('keeps every acknowledged instance through kill -9 in the middle of uploads', async () => {
    // Three crashes at different moments, so one of them lands inside a group commit.
    for (const delayMs of [0, 120, 400]) {
      server = await startServer({ dataDir: await dataDir });
      const upload = uploadUntilKilled(server, sent, 4);
      await upload.firstAcknowledged;
      await new Promise((r) => setTimeout(r, delayMs));
      const busy = await upload.kill();
      expect(busy, 'the kill must come while uploads are in flight').toBeGreaterThan(0);
      for (const uid of upload.acknowledged) acknowledged.add(uid);
    }

    server = await startServer({ dataDir: await dataDir });
    const listed: any[] = await (await adminFetch(`${server.dicomweb}/instances?limit=10000`)).json();
    const indexed = new Set(listed.map(sopUidOf));
    for (const uid of acknowledged) expect(indexed.has(uid), `acknowledged ${uid} is gone after the crash`).toBe(true);

    // Every row the index holds, acknowledged or not, serves the exact bytes that were sent.
    for (const instance of listed) {
      const uid = sopUidOf(instance);
      const response = await adminFetch(instance['00081190'].Value[0], { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
      expect(response.status, uid).toBe(200);
      const [part] = await readMultipartResponse(response);
      expect(sha256(part!.body), uid).toBe(sha256(sent.get(uid)!));
    }
  });

  it('leaves no index row without its object, and the checksum verifier agrees', async () => {
    const { stdout } = await cli(['verify'], await dataDir);
    expect(stdout).toMatch(/indexed object\(s\) checked/);
    expect(stdout).not.toMatch(/MISSING|CHANGED/);
    // And the same seen from outside the server: every row's object is in the store.
    const keys = new Set(await objectKeys(server!));
    const rows = await indexRows<{ key: string }>(server!, 'SELECT object_key AS key FROM instances');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((r) => !keys.has(r.key))).toEqual([]);
  });

  it('keeps a SQLite index in WAL mode and clears the spool of the killed process', async () => {
    if (server!.backend.index === 'sqlite') {
      expect(await indexRows(server!, 'PRAGMA journal_mode')).toEqual([{ journal_mode: 'wal' }]);
    }
    // Only the running server's own spool folder is left (a local folder on every backend); uploads of killed processes were never acknowledged.
    expect(await fs.readdir(path.join(await dataDir, 'tmp'))).toEqual([String(server!.process.pid)]);
  });
});

describe('racing uploads', () => {
  it('keeps the stored bytes and their recorded checksum together when two uploads send one SOP Instance UID with different bytes', async () => {
    const server = await startServer();
    try {
      const races = Array.from({ length: 12 }, () => {
        const ids = { studyUID: newUid(), seriesUID: newUid(), sopInstanceUID: newUid(), rows: 128, columns: 128 };
        return [syntheticInstance({ ...ids, patientName: 'Racer^One' }), syntheticInstance({ ...ids, patientName: 'Racer^Two' })] as const;
      });
      const statuses = await Promise.all(races.flatMap(([a, b]) => [stow(server.dicomweb, [a]), stow(server.dicomweb, [b])].map((r) => r.then((x) => x.status))));
      // Of each pair exactly one is stored; the other is refused as a conflicting duplicate.
      for (let i = 0; i < races.length; i++) expect([statuses[2 * i], statuses[2 * i + 1]].sort(), `race ${i}`).toEqual([200, 409]);
      const { stdout } = await cli(['verify'], server.dataDir);
      expect(stdout).toMatch(/^12 indexed object\(s\) checked, 0 unindexed object\(s\), 0 problem\(s\)/m);
    } finally {
      await server.stop();
    }
  });
});
