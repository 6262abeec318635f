// @ts-check
// Plain JavaScript, not TypeScript: `npm ci --omit=dev` (the container) runs it as postinstall, without tsx.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The OHIF build we test against; bump both together (`npm view @ohif/app@<v> dist.integrity`). */
const OHIF_VERSION = '3.13.2';
const OHIF_INTEGRITY = 'sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==';

const OHIF_DIR = path.join(import.meta.dirname, 'ohif');
const OHIF_DIST = path.join(OHIF_DIR, 'dist');

/**
 * Makes sure the built OHIF viewer is in viewer/ohif/dist.
 * `npm install @ohif/app` cannot resolve its dependency tree, but the published tarball's dist/ is the
 * complete static viewer, so we take only that.
 */
async function ensureOhif() {
  if (await exists(path.join(OHIF_DIST, 'index.html'))) return;
  await fs.mkdir(OHIF_DIR, { recursive: true });
  // Work beside the destination so the final rename stays on one filesystem and is atomic:
  // a concurrent caller either sees no dist or a complete one.
  const work = await fs.mkdtemp(path.join(OHIF_DIR, '.fetch-'));
  try {
    const { stdout } = await run('npm', ['pack', `@ohif/app@${OHIF_VERSION}`, '--json', '--pack-destination', work], {
      cwd: work,
      maxBuffer: 64 * 1024 * 1024,
    });
    /** @type {Array<{ filename: string }>} */
    const packed = JSON.parse(stdout);
    const tarball = path.join(work, packed[0].filename);
    const integrity = `sha512-${await sha512(tarball)}`;
    if (integrity !== OHIF_INTEGRITY) throw new Error(`@ohif/app@${OHIF_VERSION} tarball has ${integrity}, expected ${OHIF_INTEGRITY}`);
    await run('tar', ['-xzf', tarball, '-C', work, 'package/dist']);
    await fs.rm(tarball);
    // A leftover dist without index.html is an interrupted manual copy; move it out of the way.
    if ((await exists(OHIF_DIST)) && !(await exists(path.join(OHIF_DIST, 'index.html')))) {
      await fs.rename(OHIF_DIST, path.join(work, 'stale-dist')).catch(() => {});
    }
    try {
      await fs.rename(path.join(work, 'package/dist'), OHIF_DIST);
    } catch (error) {
      // Another process finished first; its copy is as good as ours.
      if (!(await exists(path.join(OHIF_DIST, 'index.html')))) throw error;
    }
  } finally {
    await fs.rm(work, { recursive: true, force: true });
  }
}

/** @param {string} file */
async function exists(file) {
  return fs.access(file).then(() => true, () => false);
}

/** @param {string} file */
async function sha512(file) {
  const hash = createHash('sha512');
  for await (const chunk of createReadStream(file)) hash.update(chunk);
  return hash.digest('base64');
}

ensureOhif().then(
  () => console.log(`OHIF ${OHIF_VERSION} ready in ${OHIF_DIST}`),
  (error) => {
    console.error(error instanceof Error ? error.message : error);
    process.exit(1);
  },
);
