import fs from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { syntheticInstance } from '../fixtures/synthetic.js';
import { AS_ADMIN, startServer, stowBody, type RunningServer } from '../helpers/server.js';
import { objectKeys } from '../helpers/stored.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A STOW-RS request on a raw connection, so that its body can be sent as slowly as a test likes. */
function openUpload(server: RunningServer, body: Buffer, contentType: string) {
  const { port } = new URL(server.url);
  const socket = net.connect(Number(port), '127.0.0.1');
  let received = '';
  socket.on('data', (d) => (received += d.toString()));
  socket.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.write(
    `POST /dicom-web/studies HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: ${AS_ADMIN.Authorization}\r\n` +
      `Content-Type: ${contentType}\r\nAccept: application/dicom+json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
  );
  return { socket, closed, received: () => received };
}

/** Files in the server's spool folder now. */
async function spoolFiles(server: RunningServer): Promise<string[]> {
  const entries = await fs.readdir(path.join(server.dataDir, 'tmp'), { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('connections that go quiet', () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer({ env: { PACS_IDLE_TIMEOUT: '1' } });
  });

  afterAll(async () => {
    await server?.stop();
  });

  it('closes an upload that stops sending, and keeps nothing of it', async () => {
    const { body, contentType } = stowBody([syntheticInstance({ rows: 256, columns: 256 })]);
    const upload = openUpload(server, body, contentType);
    upload.socket.write(body.subarray(0, body.length / 2));
    // While it waits, its spooled half is readable by the server's user only.
    let spooled: string[] = [];
    for (let i = 0; i < 40 && spooled.length === 0; i++) {
      spooled = await spoolFiles(server);
      if (spooled.length === 0) await sleep(10);
    }
    expect(spooled).toHaveLength(1);
    expect((await fs.stat(spooled[0]!)).mode & 0o777).toBe(0o600);

    const outcome = await Promise.race([upload.closed.then(() => 'closed'), sleep(20_000).then(() => 'still open')]);
    upload.socket.destroy();
    expect(outcome).toBe('closed');
    for (let i = 0; i < 50 && (await spoolFiles(server)).length > 0; i++) await sleep(100);
    expect(await spoolFiles(server)).toEqual([]);
    expect(await objectKeys(server, 'studies/')).toEqual([]);
  });

  it('lets an upload that trickles in for many idle timeouts finish', async () => {
    const { body, contentType } = stowBody([syntheticInstance()]);
    const upload = openUpload(server, body, contentType);
    // 24 slices 300 ms apart: 7 s in all, seven times the idle timeout, never silent for as long as one.
    const slices = 24;
    const step = Math.ceil(body.length / slices);
    for (let at = 0; at < body.length; at += step) {
      upload.socket.write(body.subarray(at, at + step));
      await sleep(300);
    }
    await Promise.race([upload.closed, sleep(20_000)]);
    upload.socket.destroy();
    expect(upload.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(await objectKeys(server, 'studies/')).toHaveLength(1);
  });
});
