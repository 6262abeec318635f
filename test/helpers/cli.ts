import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { backendEnv } from './backend.js';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

export type CliResult = { code: number; stdout: string; stderr: string };

/**
 * `npm run cli -- …` as an operator runs it beside a server: the server's data folder, on the same bucket and
 * database as a test server of that folder (test/helpers/backend.ts), and any other variables in `env`.
 */
export async function cli(args: string[], dataDir: string, env: Record<string, string> = {}): Promise<CliResult> {
  const backend = await backendEnv(dataDir);
  return run(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...args], { cwd: ROOT, env: { ...process.env, PACS_STORAGE_DIR: dataDir, ...backend, ...env } }).then(
    (r) => ({ code: 0, ...r }),
    (e) => ({ code: e.code as number, stdout: e.stdout as string, stderr: e.stderr as string }),
  );
}
