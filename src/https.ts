import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { MiddlewareHandler } from 'hono';
import type { Config } from './config.js';

/** A year: browsers that once reached us over HTTPS never try plain HTTP again for that long (RFC 6797). */
const HSTS = 'max-age=31536000';

export class TlsFilesError extends Error {}

/** The certificate chain and key the server presents, read once at start; an unreadable file stops the start by name. */
export function tlsFiles(tls: NonNullable<Config['tls']>): { cert: Buffer; key: Buffer } {
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file);
    } catch (e) {
      throw new TlsFilesError(`cannot read the TLS ${what} ${file}: ${(e as Error).message}`);
    }
  };
  return { cert: read(tls.certFile, 'certificate (PACS_TLS_CERT)'), key: read(tls.keyFile, 'private key (PACS_TLS_KEY)') };
}

/** Every answer over HTTPS tells the browser to keep to HTTPS. */
export function strictTransport(): MiddlewareHandler {
  return async (c, next) => {
    await next();
    c.header('Strict-Transport-Security', HSTS);
  };
}

/**
 * The plain-HTTP port beside HTTPS: it serves nothing but a redirect to the same path over HTTPS. A request that
 * carries a key or token is refused instead, so that a client configured with an http:// URL fails at once rather
 * than keep sending it in the clear (our session cookie is Secure over HTTPS: a browser never sends it here).
 */
export function redirectServer(httpsPort: number, publicUrl: string | undefined): http.Server {
  return http.createServer((req, res) => {
    const path = req.url?.startsWith('/') ? req.url : '/';
    if (req.headers.authorization !== undefined || /[?&]token=/i.test(path)) {
      res.writeHead(403, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
      res.end(JSON.stringify({ error: 'https-required', detail: `this server takes credentials over HTTPS only; the one just sent over plain HTTP may have been seen on the network: change the client's URL to https:// (port ${httpsPort}), and replace the credential if the network is not trusted` }));
      return;
    }
    res.writeHead(308, { Location: `${publicUrl && publicUrl.startsWith('https:') ? publicUrl : `https://${hostOnly(req.headers.host)}:${httpsPort}`}${path}`, 'Content-Length': '0' });
    res.end();
  });
}

/** The Host header without its port; a name we cannot use is replaced by localhost rather than echoed into Location. */
function hostOnly(host: string | undefined): string {
  const name = host?.replace(/:\d+$/, '') ?? '';
  return /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/.test(name) ? name : 'localhost';
}
