/**
 * multipart/related framing for DICOMweb (RFC 2046 5.1, RFC 2387; PS3.18 8.6, 10.5): a streaming reader for
 * STOW-RS request bodies and a writer for WADO-RS responses. Bodies are never held whole: memory stays at one
 * chunk plus a boundary's worth of bytes (16 KB while reading part headers), whatever the size of the body.
 */
import { randomBytes } from 'node:crypto';
import { parseMediaType } from './media-type.js';

/**
 * A problem with a multipart body or its Content-Type; `code` picks the HTTP answer:
 * not-multipart → 415, too-large and too-many-parts → 413, malformed → 400, part-too-large → that part fails,
 * the others go on.
 */
export class MultipartError extends Error {
  constructor(
    readonly code: 'not-multipart' | 'malformed' | 'too-large' | 'too-many-parts' | 'part-too-large',
    message: string,
  ) {
    super(message);
    this.name = 'MultipartError';
  }
}

/** One part of a multipart body. `body` must be read (or left) before asking for the next part. */
export type MultipartPart = {
  /** Part headers by lower-case name; repeated headers joined with ", ". */
  headers: Record<string, string>;
  contentType?: string;
  body: AsyncIterable<Uint8Array>;
};

/** `maxParts`: a body of tiny parts costs per part, not per byte, so their number is bounded too. */
export type MultipartLimits = { maxPartBytes: number; maxTotalBytes: number; maxParts?: number };

// RFC 2046 5.1.1's bchars, the last one not a space. RFC 2046 allows 70 of them; Orthanc always sends 73 (a UUID
// twice), so longer ones real senders use are forgiven, up to a bound that keeps the delimiter search cheap.
const MAX_BOUNDARY_LENGTH = 200;
const BOUNDARY = new RegExp(`^[0-9A-Za-z'()+_,\\-./:=? ]{0,${MAX_BOUNDARY_LENGTH - 1}}[0-9A-Za-z'()+_,\\-./:=?]$`);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const EXAMPLE = 'multipart/related; type="application/dicom"; boundary=<a string that does not occur in the parts>';

/**
 * The boundary and part type of a multipart/related Content-Type, read leniently: quoted or bare
 * parameters, any order, any case, any whitespace. `type` is lower-cased. Throws MultipartError
 * ('not-multipart') when the media type is another one or the boundary is missing or not RFC 2046.
 */
export function parseMultipartRelated(contentType: string): { boundary: string; type?: string } {
  const parsed = parseMediaType(contentType);
  if (parsed?.mediaType !== 'multipart/related') {
    const got = contentType.trim() ? `"${clip(contentType.trim())}"` : 'no Content-Type';
    throw new MultipartError('not-multipart', `the body must be sent as ${EXAMPLE}, but the request has ${got}`);
  }
  const { boundary, type } = parsed.params;
  if (!boundary) throw new MultipartError('not-multipart', `the multipart/related Content-Type has no boundary parameter; send ${EXAMPLE}`);
  checkBoundary(boundary);
  const partType = type?.trim().toLowerCase();
  return partType ? { boundary, type: partType } : { boundary };
}

function checkBoundary(boundary: string): void {
  if (BOUNDARY.test(boundary)) return;
  const why = boundary.length > MAX_BOUNDARY_LENGTH ? `is ${boundary.length} characters long (${MAX_BOUNDARY_LENGTH} at most)` : boundary.endsWith(' ') ? 'ends with a space' : 'holds characters other than letters, digits, space and \'()+_,-./:=?';
  throw new MultipartError('not-multipart', `the multipart boundary "${clip(boundary)}" ${why} (RFC 2046 5.1.1)`);
}

function clip(text: string): string {
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');
const MAX_HEADER_BYTES = 16 * 1024;
const MAX_PADDING_BYTES = 1024;
const MAX_EPILOGUE_BYTES = 64 * 1024;

/**
 * Streams the parts of a multipart body (RFC 2046 5.1.1) as they arrive. Bytes are counted here, so a chunked
 * body with no Content-Length is held to the limits just the same:
 * - past `maxTotalBytes` (preamble and framing included) the reader throws MultipartError 'too-large', and
 *   when part `maxParts` + 1 begins, 'too-many-parts';
 * - a part past `maxPartBytes` throws 'part-too-large' from its body iterator, once its first `maxPartBytes` are
 *   handed out; the reader then skips the rest of that part unread and goes on with the next one, so one
 *   oversized instance never stops its neighbours;
 * - broken framing (no boundary, bytes after a boundary, headers over 16 KB or without a colon, a body that ends
 *   before the closing boundary) throws 'malformed'.
 * A failure of the whole body (too-large, malformed, an error from `body`) is thrown by the part body being read
 * and again by this generator, even if the consumer caught the first. A part body left unread or half read is
 * skipped when the consumer asks for the next part. Chunks handed out are views of the input, never reused.
 * The caller owns `body`: on a failure nothing more is read from it, and it is not closed here.
 */
export async function* readMultipart(
  body: AsyncIterable<Uint8Array>,
  boundary: string,
  limits: MultipartLimits,
): AsyncGenerator<MultipartPart> {
  checkBoundary(boundary);
  const input = new Input(body, limits.maxTotalBytes);
  // Every boundary but the first is preceded by CRLF, which belongs to it rather than to the part before.
  const delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1');
  await input.skipPreamble(delimiter);
  let part: PartBody | undefined;
  let parts = 0;
  try {
    while ((await input.afterBoundary()) === 'part') {
      if (++parts > (limits.maxParts ?? Number.POSITIVE_INFINITY)) input.fail('too-many-parts', `the body holds more than ${limits.maxParts} parts`);
      const headers = await input.readHeaders();
      part = new PartBody(input, delimiter, limits.maxPartBytes);
      yield { headers, contentType: headers['content-type'], body: part };
      await part.skipRest();
    }
    await input.skipEpilogue();
  } finally {
    part?.detach();
  }
}

/** The body of one part: an iterable that reads the input up to the next delimiter, once. */
class PartBody implements AsyncIterable<Uint8Array> {
  private started = false;
  private reachedEnd = false;
  private left = false;
  private size = 0;

  constructor(
    private readonly input: Input,
    private readonly delimiter: Buffer,
    private readonly maxBytes: number,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Buffer> {
    if (this.started) throw new Error('a multipart part body can be read only once');
    this.started = true;
    this.assertCurrent();
    while (!this.reachedEnd) {
      const piece = await this.input.scan(this.delimiter);
      if (!piece) return this.input.fail('malformed', 'the body ends inside a part, before its closing boundary; was the upload cut short?');
      this.reachedEnd = piece.found;
      const room = this.maxBytes - this.size;
      this.size += piece.data.length;
      if (this.size > this.maxBytes) {
        // What fits goes out first, whatever the chunking: the head of a part refused for its size may still name it.
        if (room > 0) {
          yield piece.data.subarray(0, room);
          this.assertCurrent();
        }
        throw new MultipartError('part-too-large', `a part is larger than the ${this.maxBytes}-byte limit; it was skipped and the parts after it are still read`);
      }
      if (piece.data.length) {
        yield piece.data;
        this.assertCurrent();
      }
    }
  }

  /** The consumer moved on: refuse reads from now on. */
  detach(): void {
    this.left = true;
  }

  /** The consumer asked for the next part: skip what it left of this one. */
  async skipRest(): Promise<void> {
    this.detach();
    while (!this.reachedEnd) {
      const piece = await this.input.scan(this.delimiter);
      if (!piece) this.input.fail('malformed', 'the body ends inside a part, before its closing boundary; was the upload cut short?');
      this.reachedEnd = piece.found;
    }
  }

  private assertCurrent(): void {
    // The input has moved past this part; reading on would hand out bytes of another one.
    if (this.left) throw new Error('a multipart part body was read after the reader moved on to the next part');
  }
}

/** The body as a cursor: `pending` holds the unread bytes, usually a view of the latest chunk. */
class Input {
  private pending: Buffer = Buffer.alloc(0);
  private readonly source: AsyncIterator<Uint8Array>;
  private total = 0;
  private ended = false;
  private failure: unknown;

  constructor(
    body: AsyncIterable<Uint8Array>,
    private readonly maxTotal: number,
  ) {
    this.source = body[Symbol.asyncIterator]();
  }

  /** Fails the whole body: this error is thrown now and by every later read. */
  fail(code: MultipartError['code'], message: string): never {
    this.failure ??= new MultipartError(code, message);
    throw this.failure;
  }

  /** The next non-empty chunk, counted against the total limit; undefined at the end of the body. */
  private async pull(): Promise<Buffer | undefined> {
    if (this.failure) throw this.failure;
    while (!this.ended) {
      let next: IteratorResult<Uint8Array>;
      try {
        next = await this.source.next();
      } catch (e) {
        this.failure = e;
        throw e;
      }
      if (next.done) this.ended = true;
      else if (next.value.byteLength > 0) {
        const chunk = next.value;
        this.total += chunk.byteLength;
        if (this.total > this.maxTotal) this.fail('too-large', `the body is larger than the ${this.maxTotal}-byte limit`);
        return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      }
    }
    return undefined;
  }

  /**
   * Reads what follows the closing boundary (its CRLF, an epilogue) to the end of the body, up to a bound: a request
   * read to its end can be answered on a connection that stays open, where one answered mid-body must be closed,
   * and a client still sending its last bytes into a closed socket may lose the answer. A longer epilogue is left
   * unread (that connection is closed after the answer).
   */
  async skipEpilogue(): Promise<void> {
    let left = MAX_EPILOGUE_BYTES - this.pending.length;
    this.pending = Buffer.alloc(0);
    while (left >= 0) {
      const chunk = await this.pull();
      if (!chunk) return;
      left -= chunk.length;
    }
  }

  /** Appends the next chunk to `pending` (a copy: only for short framing reads). */
  private async more(): Promise<boolean> {
    const chunk = await this.pull();
    if (!chunk) return false;
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    return true;
  }

  /**
   * The bytes before `delimiter` ({found: true}, the delimiter consumed), or the bytes that surely precede it
   * ({found: false}); undefined when the body ends first. Each byte is searched once, by Buffer.indexOf; a
   * delimiter split across chunks is found on a small copy of the edge, the chunks themselves are not copied.
   */
  async scan(delimiter: Buffer): Promise<{ data: Buffer; found: boolean } | undefined> {
    if (this.failure) throw this.failure;
    for (;;) {
      const pending = this.pending;
      const at = pending.indexOf(delimiter);
      if (at >= 0) {
        this.pending = pending.subarray(at + delimiter.length);
        return { data: pending.subarray(0, at), found: true };
      }
      const keep = partialMatch(pending, delimiter);
      if (pending.length > keep) {
        this.pending = pending.subarray(pending.length - keep);
        return { data: pending.subarray(0, pending.length - keep), found: false };
      }
      // All of `pending` (shorter than the delimiter) may begin a delimiter: the next chunk decides.
      const chunk = await this.pull();
      if (!chunk) return undefined;
      if (pending.length === 0) this.pending = chunk;
      else if (chunk.length < delimiter.length) this.pending = Buffer.concat([pending, chunk]);
      else {
        const edge = Buffer.concat([pending, chunk.subarray(0, delimiter.length - 1)]);
        const straddle = edge.indexOf(delimiter); // if found, it starts inside `pending`
        if (straddle >= 0) {
          this.pending = chunk.subarray(straddle + delimiter.length - pending.length);
          return { data: pending.subarray(0, straddle), found: true };
        }
        this.pending = chunk;
        return { data: pending, found: false };
      }
    }
  }

  /** Up to the first boundary: it opens the body, or follows a preamble on a line of its own. */
  async skipPreamble(delimiter: Buffer): Promise<void> {
    const dashBoundary = delimiter.subarray(2);
    while (this.pending.length < dashBoundary.length && (await this.more()));
    if (this.pending.subarray(0, dashBoundary.length).equals(dashBoundary)) {
      this.pending = this.pending.subarray(dashBoundary.length);
      return;
    }
    for (;;) {
      const piece = await this.scan(delimiter);
      if (!piece) this.fail('malformed', 'the body holds no line with the boundary its Content-Type names');
      if (piece.found) return;
    }
  }

  /** After a boundary: "--" closes the body; else transport padding, CRLF, a part. */
  async afterBoundary(): Promise<'part' | 'close'> {
    for (;;) {
      const p = this.pending;
      if (p.length >= 2 && p[0] === DASH && p[1] === DASH) return 'close';
      const eol = p.indexOf(CRLF);
      let padding = eol >= 0 ? p.subarray(0, eol) : p;
      // Without a CRLF yet, a lone "-" may begin "--" and a last CR may begin the CRLF.
      if (eol < 0 && p.length === 1 && p[0] === DASH) padding = p.subarray(1);
      if (eol < 0 && p[p.length - 1] === CR) padding = p.subarray(0, -1);
      if (!isPadding(padding)) {
        this.fail('malformed', 'a boundary line is followed by other bytes: a part may contain the boundary string, or the boundary does not match the Content-Type');
      }
      if (eol >= 0) {
        this.pending = p.subarray(eol + 2);
        return 'part';
      }
      if (p.length > MAX_PADDING_BYTES) this.fail('malformed', 'a boundary line is too long');
      if (!(await this.more())) this.fail('malformed', 'the body ends without its closing boundary ("--" after the last boundary)');
    }
  }

  /** The header block of a part, up to its empty line; 16 KB at most. */
  async readHeaders(): Promise<Record<string, string>> {
    let searched = 0;
    for (;;) {
      const p = this.pending;
      if (p.length >= 2 && p[0] === CR && p[1] === LF) {
        this.pending = p.subarray(2);
        return {};
      }
      const end = p.indexOf(HEADER_END, Math.max(0, searched - 3));
      if (end >= 0 && end + 4 <= MAX_HEADER_BYTES) {
        this.pending = p.subarray(end + 4);
        const headers = parseHeaderBlock(p.toString('utf8', 0, end));
        return typeof headers === 'string' ? this.fail('malformed', headers) : headers;
      }
      if (end >= 0 || p.length > MAX_HEADER_BYTES) this.fail('malformed', `the headers of a part are larger than ${MAX_HEADER_BYTES / 1024} KB`);
      searched = p.length;
      if (!(await this.more())) this.fail('malformed', 'the body ends inside the headers of a part');
    }
  }
}

/** The length of the longest end of `buffer` that begins `delimiter` (and so must be kept for the next chunk). */
function partialMatch(buffer: Buffer, delimiter: Buffer): number {
  const first = delimiter[0]!;
  for (let at = buffer.indexOf(first, Math.max(0, buffer.length - delimiter.length + 1)); at >= 0; at = buffer.indexOf(first, at + 1)) {
    if (buffer.compare(delimiter, 0, buffer.length - at, at) === 0) return buffer.length - at;
  }
  return 0;
}

function isPadding(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09) return false;
  return true;
}

/** RFC 5322-style header lines: case-insensitive names, folded continuation lines; a message when malformed. */
function parseHeaderBlock(text: string): Record<string, string> | string {
  const headers: Record<string, string> = {};
  let last: string | undefined;
  for (const line of text.split('\r\n')) {
    if (line[0] === ' ' || line[0] === '\t') {
      if (!last) return 'the headers of a part begin with a continuation line';
      headers[last] += ` ${line.trim()}`;
      continue;
    }
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    if (colon <= 0 || !TOKEN.test(name) || name === '__proto__') return `a part header is not "Name: value": "${clip(line)}"`;
    const value = line.slice(colon + 1).trim();
    headers[name] = Object.hasOwn(headers, name) ? `${headers[name]}, ${value}` : value;
    last = name;
  }
  return headers;
}

/** A fresh boundary for a response: random, so no part will contain it, and a token, so it needs no quotes. */
export function multipartBoundary(): string {
  return `pacs-lite-${randomBytes(16).toString('hex')}`;
}

/**
 * The Content-Type of a multipart/related response. `type` is always quoted (some clients expect it so);
 * other values only when they are not tokens.
 */
export function multipartContentType(type: string, boundary: string, extra: Record<string, string> = {}): string {
  checkBoundary(boundary);
  const params = Object.entries(extra).map(([name, value]) => `; ${checkHeader(name, value)}=${TOKEN.test(value) ? value : quote(value)}`);
  return `multipart/related; type=${quote(type)}${params.join('')}; boundary=${TOKEN.test(boundary) ? boundary : quote(boundary)}`;
}

function quote(value: string): string {
  checkHeader('value', value);
  return `"${value.replace(/["\\]/g, '\\$&')}"`;
}

function checkHeader(name: string, value: string): string {
  // A CR or LF in a header would let a value write its own headers or boundaries.
  if (!TOKEN.test(name) || /[\r\n\0]/.test(value)) throw new TypeError(`not a valid header or parameter: ${JSON.stringify(name)}: ${JSON.stringify(value)}`);
  return name;
}

/**
 * A multipart/related body (for WADO-RS retrieve, frames and bulk data), streamed part by part: part bodies
 * are passed through uncopied. `headers` are further part headers (Content-Location, Content-Length, ...).
 */
export async function* multipartBody(
  parts: AsyncIterable<{ contentType: string; headers?: Record<string, string>; body: Uint8Array | AsyncIterable<Uint8Array> }>,
  boundary: string,
): AsyncGenerator<Uint8Array> {
  checkBoundary(boundary);
  // The CRLF before each boundary belongs to the delimiter; it goes out with the next part's headers.
  let delimiter = `--${boundary}`;
  for await (const part of parts) {
    let head = `${delimiter}\r\nContent-Type: ${part.contentType}\r\n`;
    checkHeader('Content-Type', part.contentType);
    for (const [name, value] of Object.entries(part.headers ?? {})) {
      if (name.toLowerCase() !== 'content-type') head += `${checkHeader(name, value)}: ${value}\r\n`;
    }
    yield Buffer.from(`${head}\r\n`);
    if (part.body instanceof Uint8Array) {
      if (part.body.byteLength) yield part.body;
    } else {
      for await (const chunk of part.body) if (chunk.byteLength) yield chunk;
    }
    delimiter = `\r\n--${boundary}`;
  }
  yield Buffer.from(`${delimiter}--\r\n`);
}
