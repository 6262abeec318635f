import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { assertLoopbackOnly, freePort, spawnServer, type RunningServer } from './server-process.js';
import type { Settings } from './settings.js';

/**
 * The real server as production runs it (`node --import tsx src/main.ts`), on a loopback port with a fresh
 * data folder. With `profileDir`, V8 writes a CPU profile there when the server exits.
 */
export async function startPacsLite(settings: Settings, workDir: string, profileDir?: string): Promise<RunningServer> {
  const port = await freePort();
  const dataDir = path.join(workDir, 'pacs-lite-data');
  await fs.mkdir(dataDir, { recursive: true });
  const profile = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const server = await spawnServer({
    command: process.execPath,
    args: [...profile, '--import', 'tsx', path.join(settings.root, 'src/main.ts')],
    cwd: settings.root,
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', PACS_STORAGE_DIR: dataDir, PACS_LOG_LEVEL: 'warn' },
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
    pid: server.pid,
    stop: server.stop,
  };
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
