import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { ensureOhif } from './fetch-ohif.js';

const CONFIG_TEMPLATE = path.join(import.meta.dirname, 'app-config.js');
const DEFAULT_ROOT = 'http://localhost:8080/dicom-web';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.jsonc': 'application/json',
  '.map': 'application/json',
  // WebAssembly.instantiateStreaming refuses any other type, and the image codecs are wasm.
  '.wasm': 'application/wasm',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.xml': 'application/xml',
  '.webapp': 'application/x-web-app-manifest+json',
};

export type OhifServer = { url: string; stop(): Promise<void> };

/**
 * Serves the built OHIF viewer, with /app-config.js pointing its one data source at `dicomwebRoot`.
 * It runs on its own origin, as a clinic would deploy it, so the viewer's DICOMweb calls are cross-origin.
 */
export async function serveOhif(opts: { dicomwebRoot: string; port?: number; host?: string }): Promise<OhifServer> {
  const dist = await ensureOhif();
  const config = (await fs.readFile(CONFIG_TEMPLATE, 'utf8')).replaceAll(`'${DEFAULT_ROOT}'`, JSON.stringify(opts.dicomwebRoot.replace(/\/+$/, '')));
  const index = await fs.readFile(path.join(dist, 'index.html'));

  const server = http.createServer(async (req, res) => {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { Allow: 'GET, HEAD' }).end();
      return;
    }
    let pathname: string;
    try {
      pathname = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    } catch {
      send(res, 400, 'text/plain; charset=utf-8', 'bad path\n', req.method === 'HEAD');
      return;
    }
    if (pathname === '/app-config.js') {
      send(res, 200, TYPES['.js']!, config, req.method === 'HEAD');
      return;
    }
    // Resolve inside dist only: a path with `..` never leaves it.
    const file = path.join(dist, path.normalize(pathname).replace(/^(\.\.[/\\])+/, ''));
    const stat = file.startsWith(dist + path.sep) ? await fs.stat(file).catch(() => undefined) : undefined;
    if (stat?.isFile()) {
      res.writeHead(200, {
        'Content-Type': TYPES[path.extname(file)] ?? 'application/octet-stream',
        'Content-Length': stat.size,
        // Bundles carry content hashes in their names; everything else is revalidated.
        'Cache-Control': /\.[0-9a-f]{16}\./.test(file) ? 'public, max-age=31536000, immutable' : 'no-cache',
      });
      if (req.method === 'HEAD') res.end();
      else createReadStream(file).pipe(res);
      return;
    }
    // A missing asset is a 404; anything else is a client-side route (/viewer, /segmentation, …).
    if (path.extname(pathname)) {
      send(res, 404, 'text/plain; charset=utf-8', 'not found\n', req.method === 'HEAD');
      return;
    }
    send(res, 200, TYPES['.html']!, index, req.method === 'HEAD');
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => resolve());
  });
  const { address, port } = server.address() as AddressInfo;
  return {
    url: `http://${address.includes(':') ? `[${address}]` : address}:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

function send(res: http.ServerResponse, status: number, type: string, body: string | Buffer, headOnly: boolean): void {
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-cache' });
  res.end(headOnly ? undefined : body);
}
