import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { ChildMessage, ParentMessage, S3Traffic } from './s3rver-child.js';

export type { S3Traffic } from './s3rver-child.js';

/** s3rver, a test server (file-backed, single-threaded JavaScript), on loopback in a process of its own. */
export type BenchS3 = {
  pid: number;
  endpoint: string;
  /** What it answered since the previous call (or since it started). */
  traffic(): Promise<S3Traffic>;
  /** The server's settings for storing into `bucket` here (created by PACS-lite at start). */
  env(bucket: string): Record<string, string>;
  /** Stops it and removes its folder, with every object in it. */
  stop(): Promise<void>;
};

const START_TIMEOUT_MS = 30_000;

/** Starts s3rver in a fresh temp folder (bench/s3rver-child.ts, through the tests' helper), output in `logFile`. */
export async function startS3rver(root: string, logFile: string): Promise<BenchS3> {
  const log = openSync(logFile, 'a');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'bench/s3rver-child.ts')], { cwd: root, stdio: ['ignore', log, log, 'ipc'] });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pending = new Map<number, (traffic: S3Traffic) => void>();
  let nextId = 0;
  let directory: string | undefined;
  const ready = new Promise<{ port: number; directory: string; credentials: Record<string, string> }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within ${START_TIMEOUT_MS / 1000} s`)), START_TIMEOUT_MS);
    child.once('exit', (code) => reject(new Error(`s3rver exited with ${code} before it was ready; see ${logFile}`)));
    child.on('message', (message: ChildMessage) => {
      if ('ready' in message) {
        clearTimeout(timer);
        directory = message.directory;
        resolve(message);
      } else pending.get(message.id)?.(message.traffic);
    });
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      if (child.connected) child.send({ cmd: 'stop' } satisfies ParentMessage);
      else child.kill('SIGTERM');
      const killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(killer);
    }
    if (directory) await fs.rm(directory, { recursive: true, force: true });
  };
  let port: number;
  let credentials: Record<string, string>;
  try {
    ({ port, credentials } = await ready);
  } catch (e) {
    await stop();
    throw e;
  }
  const endpoint = `http://127.0.0.1:${port}`;
  return {
    pid: child.pid!,
    endpoint,
    traffic() {
      const id = nextId++;
      return new Promise<S3Traffic>((resolve, reject) => {
        if (!child.connected) return reject(new Error('s3rver is not running'));
        pending.set(id, (traffic) => {
          pending.delete(id);
          resolve(traffic);
        });
        child.send({ id, cmd: 'traffic' } satisfies ParentMessage);
      });
    },
    env(bucket) {
      // As test/helpers/s3.ts's env(): path-style, s3rver's one key pair (from the child, so that this process
      // never loads s3rver), nothing of the shell's AWS profile.
      return { PACS_S3_ENDPOINT: endpoint, PACS_S3_BUCKET: bucket, PACS_S3_FORCE_PATH_STYLE: 'true', ...credentials, AWS_SESSION_TOKEN: '', AWS_PROFILE: '' };
    },
    stop,
  };
}
