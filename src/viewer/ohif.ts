import fs from 'node:fs/promises';
import path from 'node:path';
import { serveStatic } from '@hono/node-server/serve-static';
import { Hono, type Context } from 'hono';
import type { Env } from '../context.js';
import { HttpError } from '../errors.js';

/** Where `npm ci` (postinstall: viewer/fetch-ohif.mjs) puts the pinned OHIF build; from src/ or a build of it alike. */
export const OHIF_DIST = path.resolve(import.meta.dirname, '../../viewer/ohif/dist');
const CONFIG_TEMPLATE = path.resolve(import.meta.dirname, '../../viewer/app-config.js');
/** The address viewer/app-config.js names; replaced by this server's own DICOMweb root. */
const TEMPLATE_ROOT = `'http://localhost:8080/dicom-web'`;

/** OHIF's page routes (its modes' routeNames); each is the one index.html, which routes in the browser. */
export const PAGES = ['/', '/viewer', '/viewer/*', '/segmentation', '/tmtv', '/microscopy', '/dynamic-volume', '/usAnnotation', '/localbasic'];

/**
 * The OHIF viewer on the same origin as /dicom-web: its files, its pages, and an app-config.js that points it
 * at this server, so the browser's DICOMweb calls need no CORS. Mounted last: it claims only OHIF's own paths.
 */
export function ohifRouter() {
  const router = new Hono<Env>();
  const template = fs.readFile(CONFIG_TEMPLATE, 'utf8');

  router.get('/app-config.js', async (c) => {
    const root = JSON.stringify(`${c.var.publicBase}/dicom-web`);
    c.header('Cache-Control', 'no-cache');
    return c.body((await template).replaceAll(TEMPLATE_ROOT, root), 200, { 'Content-Type': 'text/javascript; charset=utf-8' });
  });

  // Page requests: the hook where sign-in sends a browser without a credential to /login (issue 14).
  for (const page of PAGES) router.get(page, async (c) => sendIndex(c));

  router.use(
    '*',
    serveStatic({
      root: OHIF_DIST,
      onFound: (file, c) => {
        // Bundles, chunks and codecs carry a content hash in their names; everything else is revalidated.
        c.header('Cache-Control', /[.-][0-9a-f]{16,}\.(js|css|wasm|woff2)$/.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache');
      },
    }),
  );
  return router;
}

async function sendIndex(c: Context<Env>) {
  const html = await fs.readFile(path.join(OHIF_DIST, 'index.html')).catch(() => undefined);
  if (!html) throw new HttpError(503, 'viewer-not-installed', `the OHIF viewer is not in ${OHIF_DIST}: run \`npm ci\` (or \`node viewer/fetch-ohif.mjs\`) where the server is installed`);
  c.header('Cache-Control', 'no-cache');
  return c.body(html, 200, { 'Content-Type': 'text/html; charset=utf-8' });
}
