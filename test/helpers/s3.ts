import fs from 'node:fs/promises';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';

/** What s3rver saw of one request, for tests that check how the store was used (ranged reads, checksums). */
export type S3Request = {
  method: string;
  /** Path without the query, decoded: `/<bucket>/<key>`. */
  path: string;
  query: URLSearchParams;
  headers: Record<string, string | string[] | undefined>;
  status: number;
  /** Bytes of the response body, as its Content-Length said (0 when it said nothing). */
  bytesServed: number;
};

export type RunningS3 = {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  /** s3rver's folder: one folder per bucket. */
  directory: string;
  requests: S3Request[];
  /** Env for a server (or CLI) process storing into `bucket` here. */
  env(bucket: string, extra?: Record<string, string>): Record<string, string>;
  stop(): Promise<void>;
  /** Starts again on the same port and folder, as a restarted service would. */
  start(): Promise<void>;
};

/** s3rver knows this one key pair (its dummy account); it checks the key id and, as set up here, not the signature. */
export const S3RVER_CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

type S3rverInstance = { run(): Promise<{ port: number }>; close(): Promise<void>; httpServer?: Server };
// Loaded when a test starts one, not by every file that only needs the credentials.
const loadS3rver = () => createRequire(import.meta.url)('s3rver') as new (options: Record<string, unknown>) => S3rverInstance;

/** A real S3-protocol server (s3rver) on loopback, a random port and a temp folder. */
export async function startS3(): Promise<RunningS3> {
  const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'pacs-s3-'));
  const requests: S3Request[] = [];
  let port = 0;
  let running: S3rverInstance | undefined;

  const S3rver = loadS3rver();
  const start = async () => {
    const instance = new S3rver({ address: '127.0.0.1', port, directory, silent: true, allowMismatchedSignatures: true, vhostBuckets: false });
    port = (await instance.run()).port;
    instance.httpServer!.on('request', (req, res) => {
      const url = new URL(req.url ?? '/', 'http://s3');
      res.on('finish', () =>
        requests.push({
          method: req.method ?? '',
          path: decodeURIComponent(url.pathname),
          query: url.searchParams,
          headers: req.headers,
          status: res.statusCode,
          bytesServed: Number(res.getHeader('content-length') ?? 0),
        }),
      );
    });
    running = instance;
  };
  await start();

  return {
    get endpoint() {
      return `http://127.0.0.1:${port}`;
    },
    get port() {
      return port;
    },
    directory,
    requests,
    env(bucket, extra = {}) {
      return {
        PACS_S3_ENDPOINT: `http://127.0.0.1:${port}`,
        PACS_S3_BUCKET: bucket,
        PACS_S3_FORCE_PATH_STYLE: 'true',
        ...S3RVER_CREDENTIALS,
        AWS_SESSION_TOKEN: '',
        AWS_PROFILE: '',
        ...extra,
      };
    },
    async stop() {
      if (!running) return;
      const server = running.httpServer!;
      running = undefined;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive sockets of the client would hold the port open: a stopped service drops them.
      server.closeAllConnections();
      await closed;
    },
    start,
  };
}
