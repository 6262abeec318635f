import { randomUUID } from 'node:crypto';
import http from 'node:http';
import { gunzipSync, inflateSync } from 'node:zlib';

export type Reply = { status: number; headers: http.IncomingHttpHeaders; body: Buffer; ms: number };

/**
 * Plain node:http with keep-alive, the same for both servers: no transparent decompression or
 * buffering policy of a higher-level client sits inside the timings.
 */
// Room for every request of the load case at once (load.ts: 45 readers, 5 uploads, /healthz), so none waits for a socket here.
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let closed = false;
/** Requests answered, by host:port: what a server's audit trail must hold. */
const answered = new Map<string, number>();

/** How many requests to the host of `url` have been answered, whatever their status. */
export function answeredBy(url: string): number {
  return answered.get(new URL(url).host) ?? 0;
}

/** Time from sending the request to the last byte of the answer. Bodies are written piece by piece, never joined. */
export function request(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer[]; timeoutMs?: number } = {},
): Promise<Reply> {
  if (closed) return Promise.reject(new Error('the benchmark was interrupted'));
  const body = opts.body ?? [];
  const length = body.reduce((n, b) => n + b.length, 0);
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = http.request(url, {
      method: opts.method ?? 'GET',
      agent,
      headers: { ...opts.headers, ...(opts.body ? { 'Content-Length': String(length) } : {}) },
    });
    req.setTimeout(opts.timeoutMs ?? 120_000, () => req.destroy(new Error(`no answer from ${url} within ${opts.timeoutMs ?? 120_000} ms`)));
    req.on('error', (e: NodeJS.ErrnoException) => {
      // A reset on a reused connection: the server closed it (keep-alive timeout) as the request went out.
      if (req.reusedSocket && e.code === 'ECONNRESET') e.message += ' on a kept-alive connection';
      reject(e);
    });
    req.on('response', (res) => {
      const host = new URL(url).host;
      answered.set(host, (answered.get(host) ?? 0) + 1);
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', reject);
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), ms: performance.now() - started }));
    });
    void writeAll(req, body).catch((e: unknown) => req.destroy(e as Error));
  });
}

async function writeAll(req: http.ClientRequest, pieces: Buffer[]): Promise<void> {
  for (const piece of pieces) {
    if (!req.write(piece)) await new Promise<void>((resolve) => req.once('drain', resolve));
  }
  req.end();
}

/** A STOW-RS body (PS3.18 10.5.1.2): one application/dicom part per file, as pieces to write in order. */
export function stowBody(files: Buffer[]): { pieces: Buffer[]; contentType: string } {
  const boundary = `bench-${randomUUID()}`;
  const pieces = files.flatMap((file) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), file, Buffer.from('\r\n')]);
  pieces.push(Buffer.from(`--${boundary}--\r\n`));
  return { pieces, contentType: `multipart/related; type="application/dicom"; boundary=${boundary}` };
}

/** The bodies of the parts of a multipart/related answer. */
export function multipartParts(reply: Reply): Buffer[] {
  return multipartEntries(reply).map((part) => part.body);
}

/** The parts of a multipart/related answer, each with its headers (names in lower case). */
export function multipartEntries(reply: Reply): Array<{ headers: Record<string, string>; body: Buffer }> {
  const type = reply.headers['content-type'] ?? '';
  const boundary = /boundary="?([^";]+)"?/i.exec(type)?.[1];
  if (!boundary) throw new Error(`expected a multipart answer, got Content-Type "${type}"`);
  const bytes = reply.body;
  const parts: Array<{ headers: Record<string, string>; body: Buffer }> = [];
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The first delimiter may lack its leading CRLF (RFC 2046 5.1.1).
  let position = bytes.indexOf(`--${boundary}`);
  while (position >= 0 && bytes.toString('latin1', position + boundary.length + 2, position + boundary.length + 4) !== '--') {
    const headersEnd = bytes.indexOf('\r\n\r\n', position);
    const next = bytes.indexOf(delimiter, headersEnd + 4);
    if (headersEnd < 0 || next < 0) throw new Error('multipart answer ends without its closing delimiter');
    const lines = bytes.toString('latin1', position, headersEnd).split('\r\n').slice(1).filter((line) => line.includes(':'));
    const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).trim().toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
    parts.push({ headers, body: bytes.subarray(headersEnd + 4, next) });
    position = next + 2;
  }
  return parts;
}

/** Closes idle keep-alive sockets, so that a server being stopped has no client connection to wait for. */
export function dropConnections(): void {
  agent.destroy();
}

/** Ends every request under way and refuses new ones: on Ctrl-C, servers then stop at once. */
export function closeClient(): void {
  closed = true;
  agent.destroy();
}

/** The body as sent before any Content-Encoding (browsers offer gzip; servers may use it). */
export function decodedBody(reply: Reply): Buffer {
  const encoding = reply.headers['content-encoding'];
  if (encoding === 'gzip') return gunzipSync(reply.body);
  if (encoding === 'deflate') return inflateSync(reply.body);
  return reply.body;
}

/** The JSON of a 200 answer; anything else is an error that names the request. */
export function expectJson(reply: Reply, what: string): unknown {
  if (reply.status !== 200) throw new Error(`${what}: HTTP ${reply.status} ${decodedBody(reply).toString('utf8', 0, 300)}`);
  return JSON.parse(decodedBody(reply).toString('utf8'));
}
