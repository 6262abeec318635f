import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type BucketLocationConstraint,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import type { Logger } from 'pino';
import { ObjectNotFound, StoreUnavailable, type ByteRange, type ObjectStore } from './object-store.js';

export type S3Settings = Readonly<{
  /** absent: AWS itself, found from the region. */
  endpoint?: string;
  bucket: string;
  region: string;
  /** `bucket` in the path rather than the host name: MinIO and most S3-compatible servers want it. */
  forcePathStyle: boolean;
  /** Put before every key, e.g. `clinic-a/`; empty or ending with `/`. */
  prefix: string;
  /** Files of this size or more go up as a multipart upload (at least 5 MiB, S3's smallest part). */
  multipartBytes: number;
  /** Given: these, rather than what the AWS default chain finds in the process's environment. */
  credentials?: Readonly<{ accessKeyId: string; secretAccessKey: string; sessionToken?: string }>;
  /** A profile of ~/.aws to take credentials from (AWS_PROFILE). */
  profile?: string;
}>;

/** S3's own limits on multipart uploads. */
const MIN_PART_BYTES = 5 * 1024 ** 2;
const MAX_PARTS = 10_000;
/** Parts are this large unless the threshold is lower or the file needs larger ones to fit in MAX_PARTS. */
const PART_BYTES = 16 * 1024 ** 2;
/** Files uploaded at once, and parts of one file: enough to fill the link, few enough to spare sockets and memory. */
const PARALLEL_UPLOADS = 8;
const PARALLEL_PARTS = 4;
/** Streamed uploads are retried here, each time from a fresh read of the file: the SDK cannot rewind a stream. */
const UPLOAD_ATTEMPTS = 3;

/** Errors of a connection rather than of the request: the store is away, not refusing. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/**
 * Objects in an S3 bucket (AWS, MinIO, any S3-compatible store). Every write sends the SHA-256 recorded at ingest
 * (ChecksumSHA256) so that the store refuses bytes that changed on the way (DESIGN decision 2); a completed
 * PutObject is durable, so no further step is needed before indexing.
 */
export class S3ObjectStore implements ObjectStore {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  /** How messages name this store: the bucket, and where it lives. */
  readonly name: string;

  private constructor(
    private readonly settings: S3Settings,
    private readonly log?: Logger,
  ) {
    this.bucket = settings.bucket;
    this.prefix = settings.prefix;
    this.name = `S3 bucket "${settings.bucket}" at ${settings.endpoint ?? `AWS ${settings.region}`}`;
    this.client = new S3Client({
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.forcePathStyle,
      credentials: settings.credentials,
      profile: settings.profile,
      // A few quick tries: a store that is away is reported (503, Retry-After) rather than waited for.
      maxAttempts: 3,
      // A dead address fails in seconds; a slow transfer is fine as long as bytes keep moving.
      requestHandler: { connectionTimeout: 3_000, socketTimeout: 60_000 },
      // Writes carry our own SHA-256; nothing else needs the SDK's default CRC32, whose aws-chunked bodies older S3 clones mangle.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      logger: sdkLogger(log),
    });
  }

  /**
   * Opens the bucket, creating it when it is missing (unless `create` is false: a bucket only read from must exist);
   * throws with what failed, the bucket and the endpoint named.
   */
  static async open(settings: S3Settings, log?: Logger, { create = true }: { create?: boolean } = {}): Promise<S3ObjectStore> {
    const store = new S3ObjectStore(settings, log);
    await store.ensureBucket(create);
    return store;
  }

  /** Closes the client's idle connections, so that a command-line process can end. */
  async close(): Promise<void> {
    this.client.destroy();
  }

  async putFiles(batch: ReadonlyArray<{ key: string; localPath: string; sha256: string }>): Promise<void> {
    // Local spool files, already complete: S3 holds them durably once each upload is acknowledged.
    await inParallel(batch, PARALLEL_UPLOADS, async (item) => {
      const { size } = await fs.stat(item.localPath);
      if (size >= this.settings.multipartBytes) await this.putInParts(item.key, item.localPath, size, item.sha256);
      else await this.putWhole(item.key, item.localPath, size, item.sha256);
      // A move, as on the filesystem: the caller keeps only the files that did not get in.
      await fs.rm(item.localPath, { force: true });
    });
  }

  async put(key: string, body: Buffer, contentType: string): Promise<void> {
    const sha256 = createHash('sha256').update(body).digest();
    await this.call(`storing ${key}`, key, () =>
      this.client.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: body, ContentType: contentType, ContentLength: body.length, ChecksumSHA256: sha256.toString('base64') }),
      ),
    );
  }

  async get(key: string, range?: ByteRange): Promise<Readable> {
    if (range?.length === 0) return Readable.from([]);
    const response = await this.call(`reading ${key}`, key, () =>
      this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Range: range && rangeHeader(range) })),
    );
    return response.Body as Readable;
  }

  async head(key: string): Promise<{ size: number; modifiedAt?: number } | undefined> {
    try {
      const response = await this.call(`looking up ${key}`, key, () => this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })));
      return { size: response.ContentLength ?? 0, modifiedAt: response.LastModified?.getTime() };
    } catch (e) {
      if (e instanceof ObjectNotFound) return undefined;
      throw e;
    }
  }

  async delete(key: string): Promise<void> {
    await this.call(`deleting ${key}`, key, () => this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key })));
  }

  async *list(prefix: string): AsyncIterable<string> {
    let token: string | undefined;
    do {
      const page = await this.call(`listing ${prefix}`, prefix, () =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token })),
      );
      for (const object of page.Contents ?? []) if (object.Key) yield object.Key.slice(this.prefix.length);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async check(): Promise<void> {
    await this.call('checking the bucket', '', () => this.client.send(new HeadBucketCommand({ Bucket: this.bucket })));
  }

  private async putWhole(key: string, file: string, size: number, sha256: string): Promise<void> {
    await this.retrying(`storing ${key}`, key, () =>
      this.client.send(
        new PutObjectCommand({
          Bucket: this.bucket,
          Key: this.prefix + key,
          Body: createReadStream(file),
          ContentLength: size,
          ContentType: 'application/dicom',
          ChecksumSHA256: Buffer.from(sha256, 'hex').toString('base64'),
          // The hex form beside it, for tools that copy or check objects without our index.
          Metadata: { sha256 },
        }),
      ),
    );
  }

  /**
   * A large file in parts streamed from disk, each with its own SHA-256. The file is hashed part by part before
   * each part goes (a second, local read), which also proves the whole file still matches the recorded checksum.
   */
  private async putInParts(key: string, file: string, size: number, sha256: string): Promise<void> {
    const partBytes = Math.max(Math.min(PART_BYTES, this.settings.multipartBytes), MIN_PART_BYTES, Math.ceil(size / MAX_PARTS));
    const created = await this.call(`starting the upload of ${key}`, key, () =>
      this.client.send(
        new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.prefix + key, ContentType: 'application/dicom', ChecksumAlgorithm: 'SHA256', Metadata: { sha256 } }),
      ),
    );
    const uploadId = created.UploadId!;
    try {
      const whole = createHash('sha256');
      const digests: Buffer[] = [];
      const parts: CompletedPart[] = [];
      const pending = new Bounded(PARALLEL_PARTS);
      for (let number = 1, offset = 0; offset < size; number++, offset += partBytes) {
        const length = Math.min(partBytes, size - offset);
        const digest = await hashRange(file, offset, length, whole);
        digests.push(digest);
        const checksum = digest.toString('base64');
        const part = { number, offset, length };
        await pending.add(async () => {
          const uploaded = await this.retrying(`storing part ${part.number} of ${key}`, key, () =>
            this.client.send(
              new UploadPartCommand({
                Bucket: this.bucket,
                Key: this.prefix + key,
                UploadId: uploadId,
                PartNumber: part.number,
                Body: createReadStream(file, { start: part.offset, end: part.offset + part.length - 1 }),
                ContentLength: part.length,
                ChecksumSHA256: checksum,
              }),
            ),
          );
          parts.push({ PartNumber: part.number, ETag: uploaded.ETag, ChecksumSHA256: checksum });
        });
      }
      await pending.done();
      if (whole.digest('hex') !== sha256) throw new Error(`${file} no longer matches the SHA-256 recorded when it was received; ${key} was not stored`);
      parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
      const completed = await this.call(`completing the upload of ${key}`, key, () =>
        this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.prefix + key, UploadId: uploadId, MultipartUpload: { Parts: parts } })),
      );
      // A multipart object's SHA-256 is that of its parts' digests, "-N" after it (S3 "composite" checksum).
      const composite = createHash('sha256').update(Buffer.concat(digests)).digest('base64');
      if (completed.ChecksumSHA256 && completed.ChecksumSHA256.split('-')[0] !== composite) {
        await this.delete(key).catch(() => undefined);
        throw new Error(`the store computed a different checksum for ${key} than the parts sent; it was not stored`);
      }
    } catch (e) {
      // Parts of an abandoned upload are billed until aborted; a store that refuses is left to its lifecycle rules.
      await this.client
        .send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.prefix + key, UploadId: uploadId }))
        .catch((err: unknown) => this.log?.warn({ err, objectKey: key, uploadId }, 'multipart upload not aborted; its parts stay until the bucket lifecycle removes them'));
      throw e;
    }
  }

  /** A request that streams a file, tried again from the start of a fresh stream while the store is only away. */
  private async retrying<T>(what: string, key: string, send: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.call(what, key, send);
      } catch (e) {
        if (!(e instanceof StoreUnavailable) || attempt >= UPLOAD_ATTEMPTS) throw e;
        await new Promise((r) => setTimeout(r, 200 * 4 ** (attempt - 1) * (0.5 + Math.random())));
      }
    }
  }

  /** Runs a request and names its failure in the domain's words: missing object, store unavailable, or what S3 said. */
  private async call<T>(what: string, key: string, send: () => Promise<T>): Promise<T> {
    try {
      return await send();
    } catch (e) {
      const err = e as S3Failure;
      if (err.name === 'NoSuchKey' || (err.name === 'NotFound' && key !== '')) throw new ObjectNotFound(key);
      const away = unavailableReason(err);
      if (away) throw new StoreUnavailable(`S3 bucket "${this.bucket}"`, `${what}: ${away}`, { cause: e });
      throw new Error(`${this.name}: ${what} failed: ${describe(err)}`, { cause: e });
    }
  }

  /** At start: the bucket is there and ours to use, or made; else a message that says which of these failed. */
  private async ensureBucket(create: boolean): Promise<void> {
    const cannot = (why: string, e: unknown) => new Error(`cannot use ${this.name}: ${why}`, { cause: e });
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (e) {
      const err = e as S3Failure;
      const status = err.$metadata?.httpStatusCode;
      if (status !== 404) {
        if (err.name === 'CredentialsProviderError') throw cannot('no AWS credentials were found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or a role)', e);
        const away = unavailableReason(err);
        if (away) throw cannot(`the store ${away}; check PACS_S3_ENDPOINT and that the store is running`, e);
        if (status === 403) throw cannot('access denied (403): check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and that they may use this bucket', e);
        if (status === 301 || status === 400) throw cannot(`the store refused the request (${status} ${err.name}): check PACS_S3_REGION and PACS_S3_FORCE_PATH_STYLE`, e);
        throw cannot(describe(err), e);
      }
    }
    if (!create) throw cannot('the bucket does not exist; check PACS_S3_BUCKET and PACS_S3_ENDPOINT', undefined);
    try {
      // us-east-1 is the one region S3 wants unnamed.
      const location = this.settings.region === 'us-east-1' ? undefined : { LocationConstraint: this.settings.region as BucketLocationConstraint };
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket, CreateBucketConfiguration: location }));
      this.log?.info({ bucket: this.bucket, endpoint: this.settings.endpoint }, 'created the bucket');
    } catch (e) {
      const err = e as S3Failure;
      // Another replica starting at the same moment made it.
      if (err.name === 'BucketAlreadyOwnedByYou') return;
      // s3rver and some S3 clones say BucketAlreadyExists to that too (replicas.test.ts saw one of two replicas stop
      // on it): whether the bucket is ours to use, HeadBucket tells, as it does for AWS's other owner.
      if (err.$metadata?.httpStatusCode === 409 && (await this.client.send(new HeadBucketCommand({ Bucket: this.bucket })).then(() => true, () => false))) return;
      throw cannot(`it does not exist and could not be created (${describe(err)}); create it, or give these credentials s3:CreateBucket`, e);
    }
  }
}

type S3Failure = Error & { code?: string; $metadata?: { httpStatusCode?: number }; cause?: unknown };

/** Why the store counts as away (network, timeout, its own 5xx or throttling), or undefined when it answered and refused. */
function unavailableReason(err: S3Failure): string | undefined {
  const code = err.code ?? (err.cause as { code?: string } | undefined)?.code;
  if (code && NETWORK_CODES.has(code)) return `cannot be reached (${code})`;
  if (err.name === 'TimeoutError' || err.name === 'RequestTimeout' || err.name === 'AbortError') return 'did not answer in time';
  const status = err.$metadata?.httpStatusCode;
  if (status !== undefined && (status >= 500 || status === 429)) return `answered ${status} ${err.name}`;
  if (err.name === 'SlowDown' || err.name === 'ServiceUnavailable' || err.name === 'InternalError') return `answered ${err.name}`;
  return undefined;
}

function describe(err: S3Failure): string {
  const status = err.$metadata?.httpStatusCode;
  return `${status ? `${status} ` : ''}${err.name}${err.message && err.message !== err.name && err.message !== 'UnknownError' ? `: ${err.message}` : ''}`;
}

function rangeHeader(range: ByteRange): string {
  return `bytes=${range.offset}-${range.offset + range.length - 1}`;
}

/** SHA-256 of a byte range of a file, streamed; the bytes also feed `whole`, in order. */
async function hashRange(file: string, offset: number, length: number, whole: ReturnType<typeof createHash>): Promise<Buffer> {
  const part = createHash('sha256');
  for await (const chunk of createReadStream(file, { start: offset, end: offset + length - 1, highWaterMark: 1024 * 1024 })) {
    part.update(chunk as Buffer);
    whole.update(chunk as Buffer);
  }
  return part.digest();
}

/** Tasks run at most `limit` at once; the first failure stops new ones, and is thrown once the running ones settle. */
class Bounded {
  private readonly running = new Set<Promise<void>>();
  private failure: { error: unknown } | undefined;

  constructor(private readonly limit: number) {}

  /** Waits for a free slot, then starts `task`; throws the first failure instead of starting more. */
  async add(task: () => Promise<void>): Promise<void> {
    while (this.running.size >= this.limit) await Promise.race(this.running);
    if (this.failure) return this.done();
    const run: Promise<void> = task()
      .catch((error: unknown) => {
        // A store that is away explains the rest: keep that reason over a later, vaguer one.
        if (!this.failure || (error instanceof StoreUnavailable && !(this.failure.error instanceof StoreUnavailable))) this.failure = { error };
      })
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  async done(): Promise<void> {
    await Promise.all(this.running);
    if (this.failure) throw this.failure.error;
  }
}

async function inParallel<T>(items: readonly T[], limit: number, each: (item: T) => Promise<void>): Promise<void> {
  const pool = new Bounded(limit);
  for (const item of items) await pool.add(() => each(item));
  await pool.done();
}

/**
 * The SDK's own messages (a failed command, a stream it will not retry) go to our log at debug, never to the
 * console: every failure that matters reaches the caller as an error, and is logged there in our words.
 */
function sdkLogger(log?: Logger) {
  const text = (a: unknown) => {
    const entry = a as { commandName?: string; error?: { name?: string; message?: string } } | null;
    return typeof a === 'object' && entry?.commandName ? `${entry.commandName}: ${entry.error ? `${entry.error.name} ${entry.error.message}` : 'done'}` : String(a);
  };
  const debug = (...args: unknown[]) => log?.debug({ sdk: args.map(text).join(' ') }, 'S3 client');
  return { trace: () => undefined, debug: () => undefined, info: () => undefined, warn: debug, error: debug };
}
