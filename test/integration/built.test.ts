import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminFetch, readMultipartResponse, startServer, stow, type RunningServer } from '../helpers/server.js';

/**
 * The server and command line as production runs them: compiled by `npm run build`, laid out as the container's /app
 * (package.json, node_modules, dist/, migrations/, viewer/), run by node alone. Every other test runs the source.
 */
const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const FIXTURES = path.join(ROOT, 'test/fixtures/dicom');

let app: string;
let server: RunningServer;

beforeAll(async () => {
  // A folder of its own, not ./dist: tests run in parallel and a developer's dist/ is theirs.
  app = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-built-'));
  await run('npm', ['run', 'build', '--', '--outDir', path.join(app, 'dist')], { cwd: ROOT });
  await fs.copyFile(path.join(ROOT, 'package.json'), path.join(app, 'package.json'));
  for (const shared of ['node_modules', 'migrations', 'viewer']) await fs.symlink(path.join(ROOT, shared), path.join(app, shared));
  server = await startServer({ entry: path.join(app, 'dist/main.js') });
}, 600_000);

afterAll(async () => {
  await server?.stop();
  if (app) await fs.rm(app, { recursive: true, force: true });
});

describe('the build in dist/', () => {
  it('starts, applies its migrations and serves OHIF with an app-config pointed at itself', async () => {
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });
    const page = await fetch(`${server.url}/`);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('app-config.js');
    expect(await (await fetch(`${server.url}/app-config.js`)).text()).toContain(`"${server.dicomweb}"`);
  });

  it('stores an instance, returns its bytes and renders its JPEG 2000 frame in a codec worker', async () => {
    const [fixture] = JSON.parse(await fs.readFile(path.join(FIXTURES, 'manifest.json'), 'utf8')).filter((f: { path: string }) => f.path === 'j2k-lossless.dcm');
    const bytes = await fs.readFile(path.join(FIXTURES, fixture.path));
    expect((await stow(server.dicomweb, [bytes])).status).toBe(200);
    const instance = `${server.dicomweb}/studies/${fixture.studyUID}/series/${fixture.seriesUID}/instances/${fixture.sopInstanceUID}`;
    const retrieved = await adminFetch(instance, { headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' } });
    expect(retrieved.status).toBe(200);
    const [part] = await readMultipartResponse(retrieved);
    expect(part!.body.equals(bytes)).toBe(true);
    const rendered = await adminFetch(`${instance}/rendered`, { headers: { Accept: 'image/png' } });
    expect(rendered.status).toBe(200);
    expect(rendered.headers.get('content-type')).toBe('image/png');
    expect(Buffer.from(await rendered.arrayBuffer()).subarray(1, 4).toString()).toBe('PNG');
  });

  it('runs the command line: its help, and keys list on the server index', async () => {
    const cli = (args: string[]) => run(process.execPath, [path.join(app, 'dist/cli.js'), ...args], { env: { ...process.env, PACS_STORAGE_DIR: server.dataDir } });
    expect((await cli(['--help'])).stdout).toMatch(/^usage: npm run cli/);
    expect((await cli(['keys', 'list'])).stdout).toMatch(/^\S+\s+admin\s.*\(PACS_ADMIN_KEY\)/m);
  });
});
