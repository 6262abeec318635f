import { randomBytes } from 'node:crypto';

/** A problem with the framing of a multipart body; `code` picks the HTTP answer. */
export class MultipartError extends Error {
  constructor(
    readonly code: 'malformed' | 'too-large' | 'part-too-large' | 'not-multipart',
    message: string,
  ) {
    super(message);
    this.name = 'MultipartError';
  }
}

export type MultipartPart = {
  headers: Record<string, string>;
  contentType?: string;
  body: AsyncIterable<Uint8Array>;
};

/** Media type parameters, quoted or not, in any order and case (DESIGN decision 5). */
export function parseParameters(text: string): { mediaType: string; params: Record<string, string> } {
  const [head, ...rest] = splitOutsideQuotes(text, ';');
  const params: Record<string, string> = {};
  for (const piece of rest) {
    const eq = piece.indexOf('=');
    if (eq <= 0) continue;
    let value = piece.slice(eq + 1).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    params[piece.slice(0, eq).trim().toLowerCase()] = value;
  }
  return { mediaType: (head ?? '').trim().toLowerCase(), params };
}

function splitOutsideQuotes(text: string, separator: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]!;
    if (ch === '"' && text[i - 1] !== '\\') quoted = !quoted;
    if (ch === separator && !quoted) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out;
}

export function parseMultipartRelated(contentType: string): { boundary: string; type?: string } {
  const { mediaType, params } = parseParameters(contentType);
  if (mediaType !== 'multipart/related') {
    throw new MultipartError('not-multipart', `the request must be multipart/related; type="application/dicom", not "${mediaType || 'no Content-Type'}"`);
  }
  const boundary = params.boundary;
  // RFC 2046 5.1.1: 1 to 70 characters.
  if (!boundary || boundary.length > 70) throw new MultipartError('not-multipart', 'the multipart/related Content-Type has no usable boundary parameter');
  return { boundary, type: params.type };
}

const CRLF = Buffer.from('\r\n');
const MAX_HEADER_BYTES = 16 * 1024;

/**
 * Streams the parts of a multipart body (RFC 2046 5.1). Never holds more than one chunk plus a boundary's
 * worth of bytes; counts every byte itself, so a chunked body cannot slip past the limits.
 */
export async function* readMultipart(
  body: AsyncIterable<Uint8Array>,
  boundary: string,
  limits: { maxPartBytes: number; maxTotalBytes: number },
): AsyncGenerator<MultipartPart> {
  const reader = new ChunkReader(body, limits.maxTotalBytes);
  const dashBoundary = Buffer.from(`--${boundary}`);
  const delimiter = Buffer.from(`\r\n--${boundary}`);

  // Preamble: everything up to the first boundary line.
  if (!(await reader.skipUntil(dashBoundary, true))) throw new MultipartError('malformed', 'the body holds no multipart boundary');
  for (;;) {
    // After a boundary: "--" closes the body, else transport padding and CRLF begin a part.
    const tail = await reader.readLine(1024);
    if (tail === undefined) throw new MultipartError('malformed', 'the body ends right after a boundary');
    if (tail.startsWith('--')) return;
    if (tail.trim() !== '') throw new MultipartError('malformed', 'unexpected text after a multipart boundary');
    const headers = await readHeaders(reader);
    let finished = false;
    let size = 0;
    const partBody = (async function* () {
      for (;;) {
        const piece = await reader.readUntil(delimiter);
        if (piece === undefined) throw new MultipartError('malformed', 'the body ends inside a part, without a closing boundary');
        size += piece.data.length;
        if (size > limits.maxPartBytes) throw new MultipartError('part-too-large', `a part is larger than ${limits.maxPartBytes} bytes`);
        if (piece.data.length) yield piece.data;
        if (piece.found) {
          finished = true;
          return;
        }
      }
    })();
    yield { headers, contentType: headers['content-type'], body: partBody };
    if (!finished) {
      // The consumer stopped early (a refused part): skip the rest of it, still counting bytes.
      if (!(await reader.skipUntil(delimiter, false))) throw new MultipartError('malformed', 'the body ends inside a part, without a closing boundary');
    }
  }
}

async function readHeaders(reader: ChunkReader): Promise<Record<string, string>> {
  const headers: Record<string, string> = {};
  let total = 0;
  let last: string | undefined;
  for (;;) {
    const line = await reader.readLine(MAX_HEADER_BYTES);
    if (line === undefined) throw new MultipartError('malformed', 'the body ends inside part headers');
    total += line.length + 2;
    if (total > MAX_HEADER_BYTES) throw new MultipartError('malformed', 'part headers are larger than 16 KB');
    if (line === '') return headers;
    if (/^[ \t]/.test(line) && last) {
      headers[last] += ' ' + line.trim(); // folded header line
      continue;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new MultipartError('malformed', `malformed part header "${line.slice(0, 80)}"`);
    last = line.slice(0, colon).trim().toLowerCase();
    headers[last] = line.slice(colon + 1).trim();
  }
}

/** Pulls chunks on demand and finds delimiters across chunk edges with Buffer.indexOf. */
class ChunkReader {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly iterator: AsyncIterator<Uint8Array>;
  private total = 0;
  private ended = false;

  constructor(
    source: AsyncIterable<Uint8Array>,
    private readonly maxTotal: number,
  ) {
    this.iterator = source[Symbol.asyncIterator]();
  }

  private async pull(): Promise<boolean> {
    if (this.ended) return false;
    const next = await this.iterator.next();
    if (next.done) {
      this.ended = true;
      return false;
    }
    const chunk = next.value;
    this.total += chunk.byteLength;
    if (this.total > this.maxTotal) {
      await this.iterator.return?.();
      throw new MultipartError('too-large', `the body is larger than ${this.maxTotal} bytes`);
    }
    const incoming = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, incoming]) : incoming;
    return true;
  }

  /**
   * Returns the bytes before `needle` (found) or as many as can safely be released (not found yet).
   * undefined when the body ended without it.
   */
  async readUntil(needle: Buffer): Promise<{ data: Buffer; found: boolean } | undefined> {
    for (;;) {
      const at = this.buffer.indexOf(needle);
      if (at >= 0) {
        const data = this.buffer.subarray(0, at);
        this.buffer = this.buffer.subarray(at + needle.length);
        return { data, found: true };
      }
      // Keep a tail that could be the start of the needle; release the rest.
      const safe = this.buffer.length - (needle.length - 1);
      if (safe > 0) {
        const data = this.buffer.subarray(0, safe);
        this.buffer = this.buffer.subarray(safe);
        return { data, found: false };
      }
      if (!(await this.pull())) {
        if (this.buffer.length === 0) return undefined;
        return undefined;
      }
    }
  }

  async skipUntil(needle: Buffer, atStart: boolean): Promise<boolean> {
    while (atStart && this.buffer.length < needle.length && (await this.pull()));
    if (atStart && this.buffer.subarray(0, needle.length).equals(needle)) {
      this.buffer = this.buffer.subarray(needle.length);
      return true;
    }
    const withCrlf = atStart ? Buffer.concat([CRLF, needle]) : needle;
    for (;;) {
      const piece = await this.readUntil(withCrlf);
      if (piece === undefined) return false;
      if (piece.found) return true;
    }
  }

  async readLine(max: number): Promise<string | undefined> {
    for (;;) {
      const at = this.buffer.indexOf(CRLF);
      if (at >= 0) {
        const line = this.buffer.toString('latin1', 0, at);
        this.buffer = this.buffer.subarray(at + 2);
        return line;
      }
      if (this.buffer.length > max) throw new MultipartError('malformed', 'a line in the multipart framing is too long');
      if (!(await this.pull())) {
        if (this.buffer.length === 0) return undefined;
        // The closing boundary may lack its final CRLF.
        const line = this.buffer.toString('latin1');
        this.buffer = Buffer.alloc(0);
        return line;
      }
    }
  }
}

export function multipartBoundary(): string {
  return `pacs-${randomBytes(12).toString('hex')}`;
}

export function multipartContentType(type: string, boundary: string): string {
  return `multipart/related; type="${type}"; boundary=${boundary}`;
}

/** A multipart/related response body, streamed part by part. */
export async function* multipartBody(
  parts: AsyncIterable<{ contentType: string; body: Uint8Array | AsyncIterable<Uint8Array> }>,
  boundary: string,
): AsyncGenerator<Uint8Array> {
  for await (const part of parts) {
    yield Buffer.from(`--${boundary}\r\nContent-Type: ${part.contentType}\r\n\r\n`);
    if (part.body instanceof Uint8Array) yield part.body;
    else for await (const chunk of part.body) yield chunk;
    yield CRLF;
  }
  yield Buffer.from(`--${boundary}--\r\n`);
}
