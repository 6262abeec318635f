import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { assertLoopbackOnly, freePort, spawnServer, type RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

export type PacsLiteServer = RunningServer & {
  /** Its storage folder: objects, and index.sqlite with the audit trail. */
  dataDir: string;
  /** PACS_ADMIN_KEY, seeded as an admin key; `auth` sends it. */
  adminKey: string;
};

/** A random admin key for one run: 43 base64url characters, no dot (a dot would make it a viewer token). */
export function randomAdminKey(): string {
  return randomBytes(32).toString('base64url');
}

/** Builds dist/ from this working tree (as `npm run build`), so the server measured is the code being worked on. */
export function buildPacsLite(settings: Settings): void {
  execFileSync(process.execPath, [path.join(settings.root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: settings.root, stdio: 'inherit' });
}

/** Where viewer links would point; no viewer is served in the benchmark, the links are only for their tokens. */
const VIEWER_URL = 'http://127.0.0.1:3000';

/**
 * The real server as `npm start` runs it (`node dist/main.js`, built from this working tree by `buildPacsLite`), on a loopback port, with its data
 * in `workDir` (a later start with the same `workDir` reopens the same data). It is started with
 * PACS_ADMIN_KEY and every request the benchmark makes sends that key. Anonymous reads are off unless
 * `anonymousRead`. With `profileDir`, V8 writes a CPU profile there when the server exits. `env` adds settings,
 * such as an S3 bucket (PACS_S3_*) or a Postgres index (PACS_DATABASE_URL): backends.ts, qido-scale.ts.
 */
export async function startPacsLite(
  settings: Settings,
  workDir: string,
  opts: { adminKey: string; anonymousRead?: boolean; profileDir?: string; env?: Readonly<Record<string, string>> },
): Promise<PacsLiteServer> {
  const port = await freePort();
  const dataDir = path.join(workDir, 'pacs-lite-data');
  await fs.mkdir(dataDir, { recursive: true });
  const profile = opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : [];
  // No PACS_* setting of the shell that runs the benchmark reaches the server: only the ones below.
  const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PACS_')));
  const server = await spawnServer({
    command: process.execPath,
    args: [...profile, path.join(settings.root, 'dist/main.js')],
    cwd: settings.root,
    env: {
      ...inherited,
      PORT: String(port),
      HOST: '127.0.0.1',
      PACS_STORAGE_DIR: dataDir,
      PACS_LOG_LEVEL: 'warn',
      PACS_ADMIN_KEY: opts.adminKey,
      PACS_VIEWER_URL: VIEWER_URL,
      PACS_ANONYMOUS_READ: opts.anonymousRead ? 'true' : 'false',
      // Off unless a case measures it: servers of the same run would all want port 11112.
      PACS_DICOM_PORT: '0',
      ...opts.env,
    },
    logFile: path.join(workDir, 'pacs-lite.log'),
    readyUrl: `http://127.0.0.1:${port}/healthz`,
  });
  await assertLoopbackOnly(port).catch(async (e: unknown) => {
    await server.stop();
    throw e;
  });
  return {
    name: 'pacs-lite',
    version: await pacsLiteVersion(settings.root),
    dicomweb: `http://127.0.0.1:${port}/dicom-web`,
    auth: { Authorization: `Bearer ${opts.adminKey}` },
    pid: server.pid,
    stop: server.stop,
    dataDir,
    adminKey: opts.adminKey,
  };
}

/** The end of the log of the PACS-lite started in `workDir`: the server's own words on what failed. */
export async function serverLogTail(workDir: string): Promise<string> {
  return (await fs.readFile(path.join(workDir, 'pacs-lite.log'), 'utf8').catch(() => '')).trim().split('\n').slice(-5).join('\n    ');
}

async function pacsLiteVersion(root: string): Promise<string> {
  const { version } = JSON.parse(await fs.readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  let commit = 'unknown commit';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
    if (execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: root, encoding: 'utf8' }).trim()) commit += '+uncommitted src';
  } catch {
    // Not a git checkout: the version alone names it.
  }
  return `PACS-lite ${version} (${commit}), Node ${process.version}`;
}
