import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import fs from 'node:fs/promises';
import type { ServerName } from './settings.js';

export { freePort } from '../test/helpers/server.js';

/** A server under test, whatever it is: where to reach it and how to watch and stop its process. */
export type RunningServer = {
  name: ServerName;
  /** Product and version, for the report. */
  version: string;
  dicomweb: string;
  /** Headers every request to it carries: its credential, when it asks for one. */
  auth: Readonly<Record<string, string>>;
  pid: number;
  stop(): Promise<void>;
};

export type ServerProcess = { child: ChildProcess; pid: number; stop(): Promise<void> };

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;

/**
 * Starts a server with its output in `logFile`, and resolves once `readyUrl` answers 200.
 * On failure the process is stopped and the end of its log is in the error.
 */
export async function spawnServer(opts: {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  cwd: string;
  logFile: string;
  readyUrl: string;
}): Promise<ServerProcess> {
  const log = openSync(opts.logFile, 'a');
  const child = spawn(opts.command, opts.args, { cwd: opts.cwd, env: opts.env, stdio: ['ignore', log, log] });
  closeSync(log);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(killer);
  };
  try {
    await waitUntilReady(child, opts.readyUrl);
  } catch (e) {
    await stop();
    const tail = (await fs.readFile(opts.logFile, 'utf8').catch(() => '')).split('\n').slice(-20).join('\n');
    throw new Error(`${(e as Error).message}\n--- end of ${opts.logFile} ---\n${tail}`);
  }
  return { child, pid: child.pid!, stop };
}

async function waitUntilReady(child: ChildProcess, url: string): Promise<void> {
  for (const started = Date.now(); ; ) {
    if (child.exitCode !== null) throw new Error(`${child.spawnfile} exited with ${child.exitCode} before answering ${url}`);
    if (Date.now() - started > START_TIMEOUT_MS) throw new Error(`${child.spawnfile} did not answer ${url} within ${START_TIMEOUT_MS / 1000} s`);
    const ok = await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false);
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Throws unless every socket listening on `port` is bound to the loopback address (from /proc/net/tcp{,6}). */
export async function assertLoopbackOnly(port: number): Promise<void> {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const LISTEN = '0A';
  const LOOPBACK = new Set(['0100007F', '00000000000000000000000001000000']);
  const listeners: string[] = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    const lines = (await fs.readFile(table, 'utf8').catch(() => '')).split('\n').slice(1);
    for (const line of lines) {
      const [, local, , state] = line.trim().split(/\s+/);
      const [address, p] = (local ?? '').split(':');
      if (p === hexPort && state === LISTEN) listeners.push(address!);
    }
  }
  if (listeners.length === 0) throw new Error(`nothing listens on port ${port}`);
  const open = listeners.filter((a) => !LOOPBACK.has(a));
  if (open.length) throw new Error(`port ${port} is open beyond the loopback interface (${open.join(', ')}); refusing to benchmark`);
}
