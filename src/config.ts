import path from 'node:path';
import { z } from 'zod';
import type { S3Settings } from './storage/s3.js';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const bytes = z
  .string()
  .regex(/^\d+(\.\d+)?\s*([kmgt]i?b?)?$/i, 'a byte size such as 500MB, 2GiB or 1048576')
  .transform(parseByteSize);

/** No viewer token may live longer than this, whatever the configuration says. */
export const LONGEST_TOKEN_TTL = 7 * 24 * 3600;

const seconds = z.coerce.number().int().min(1).max(LONGEST_TOKEN_TTL);

const signingKey = z
  .string()
  .regex(/^[A-Za-z0-9+/_-]{43,}={0,2}$/, 'at least 32 random bytes in base64; make one with `openssl rand -base64 32`');

const schema = z.object({
  PORT: z.coerce.number().int().min(0).max(65535).default(8080),
  HOST: z.string().min(1).default('0.0.0.0'),
  PACS_STORAGE_DIR: z.string().min(1).default('./storage'),
  PACS_PUBLIC_URL: z.url().optional(),
  PACS_CORS_ORIGINS: z.string().default('*'),
  PACS_MAX_REQUEST_BYTES: bytes.default(4 * 1024 ** 3),
  PACS_MAX_INSTANCE_BYTES: bytes.default(2 * 1024 ** 3),
  PACS_OVERWRITE_DIFFERENT: bool.default(false),
  PACS_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PACS_ANONYMOUS_READ: bool.default(false),
  PACS_ADMIN_KEY: z
    .string()
    .min(24, 'at least 24 characters; make one with `openssl rand -base64 32`')
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
    // A credential with a dot is taken for a viewer token (auth/middleware.ts), so such a key could never be used.
    .regex(/^[^.]+$/, 'without a dot, which marks a viewer token')
    .optional(),
  PACS_VIEWER_URL: z.url().optional(),
  PACS_VIEWER_TOKEN_TTL: seconds.default(3600),
  PACS_VIEWER_TOKEN_MAX_TTL: seconds.default(12 * 3600),
  PACS_VIEWER_SIGNING_KEY: signingKey.optional(),
  PACS_VIEWER_SIGNING_KEY_PREVIOUS: signingKey.optional(),
  PACS_RENDER_MAX_FRAME_BYTES: bytes.default(256 * 1024 ** 2),
  PACS_S3_ENDPOINT: z.url().optional(),
  PACS_S3_BUCKET: z
    .string()
    .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, 'an S3 bucket name: 3-63 lower-case letters, digits, dots and hyphens')
    .optional(),
  PACS_S3_REGION: z.string().regex(/^[a-z0-9-]+$/, 'a region name such as us-east-1').default('us-east-1'),
  PACS_S3_FORCE_PATH_STYLE: bool.default(false),
  PACS_S3_PREFIX: z
    .string()
    .regex(/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/?$/, 'folder names of letters, digits, dots, hyphens and underscores, separated by /, such as clinic-a/')
    .refine((p) => !p.split('/').some((s) => s === '.' || s === '..'), 'no . or .. folders')
    .optional(),
  // S3 takes parts of 5 MiB or more (the last one aside).
  PACS_S3_MULTIPART_BYTES: bytes.refine((n) => n >= 5 * 1024 ** 2, 'at least 5MiB, the smallest part S3 accepts').default(64 * 1024 ** 2),
  PACS_DATABASE_URL: z.string().refine(isPostgresUrl, 'a postgres:// URL such as postgres://pacs:secret@db:5432/pacs').optional(),
  // Read here too so that a configuration given as a file (the target of `migrate`) carries its own bucket credentials.
  AWS_ACCESS_KEY_ID: z.string().optional(),
  AWS_SECRET_ACCESS_KEY: z.string().optional(),
  AWS_SESSION_TOKEN: z.string().optional(),
  AWS_PROFILE: z.string().optional(),
});

/** Variables whose values never appear in a message. */
const SECRETS = new Set(['PACS_ADMIN_KEY', 'PACS_VIEWER_SIGNING_KEY', 'PACS_VIEWER_SIGNING_KEY_PREVIOUS', 'PACS_DATABASE_URL', 'AWS_SECRET_ACCESS_KEY', 'AWS_SESSION_TOKEN']);

export type Config = Readonly<{
  port: number;
  host: string;
  storageDir: string;
  publicUrl?: string;
  corsOrigins: readonly string[];
  maxRequestBytes: number;
  maxInstanceBytes: number;
  overwriteDifferent: boolean;
  logLevel: string;
  /** Opt-in for a trusted LAN: reads (QIDO, WADO, study summaries) without a credential. */
  anonymousRead: boolean;
  adminKey?: string;
  viewerUrl?: string;
  viewerToken: Readonly<{ defaultTtl: number; maxTtl: number; signingKey?: string; previousSigningKey?: string }>;
  /** Largest decoded frame (rows × columns × samples × bytes a sample) that rendering will decode; larger ones get 413. */
  renderMaxFrameBytes: number;
  /** Present when PACS_S3_BUCKET is set: objects go to that bucket instead of `<storageDir>/objects`. */
  s3?: S3Settings;
  /** Present when PACS_DATABASE_URL is set: the index is in that Postgres database instead of `<storageDir>/index.sqlite`. Holds a password. */
  databaseUrl?: string;
}>;

export class ConfigError extends Error {}

/** Reads the environment once; every bad variable is named in one message. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(Object.keys(schema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    const shown = (name: string) => (SECRETS.has(name) ? '(hidden)' : JSON.stringify(known[name]));
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}=${shown(String(i.path[0]))}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  const e = parsed.data;
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    storageDir: path.resolve(e.PACS_STORAGE_DIR),
    publicUrl: e.PACS_PUBLIC_URL?.replace(/\/+$/, ''),
    corsOrigins: Object.freeze(e.PACS_CORS_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean)),
    maxRequestBytes: e.PACS_MAX_REQUEST_BYTES,
    maxInstanceBytes: e.PACS_MAX_INSTANCE_BYTES,
    overwriteDifferent: e.PACS_OVERWRITE_DIFFERENT,
    logLevel: e.PACS_LOG_LEVEL,
    anonymousRead: e.PACS_ANONYMOUS_READ,
    adminKey: e.PACS_ADMIN_KEY,
    viewerUrl: e.PACS_VIEWER_URL?.replace(/\/+$/, ''),
    viewerToken: Object.freeze({
      defaultTtl: Math.min(e.PACS_VIEWER_TOKEN_TTL, e.PACS_VIEWER_TOKEN_MAX_TTL),
      maxTtl: e.PACS_VIEWER_TOKEN_MAX_TTL,
      signingKey: e.PACS_VIEWER_SIGNING_KEY,
      previousSigningKey: e.PACS_VIEWER_SIGNING_KEY_PREVIOUS,
    }),
    renderMaxFrameBytes: e.PACS_RENDER_MAX_FRAME_BYTES,
    s3: e.PACS_S3_BUCKET
      ? Object.freeze({
          endpoint: e.PACS_S3_ENDPOINT?.replace(/\/+$/, ''),
          bucket: e.PACS_S3_BUCKET,
          region: e.PACS_S3_REGION,
          forcePathStyle: e.PACS_S3_FORCE_PATH_STYLE,
          prefix: e.PACS_S3_PREFIX ? e.PACS_S3_PREFIX.replace(/\/?$/, '/') : '',
          multipartBytes: e.PACS_S3_MULTIPART_BYTES,
          // Both or neither, as the AWS environment provider takes them; else the AWS default chain finds them.
          // Not frozen: the SDK marks on the object where credentials came from.
          credentials:
            e.AWS_ACCESS_KEY_ID && e.AWS_SECRET_ACCESS_KEY
              ? { accessKeyId: e.AWS_ACCESS_KEY_ID, secretAccessKey: e.AWS_SECRET_ACCESS_KEY, sessionToken: e.AWS_SESSION_TOKEN }
              : undefined,
          profile: e.AWS_PROFILE,
        })
      : undefined,
    databaseUrl: e.PACS_DATABASE_URL,
  });
}

function isPostgresUrl(text: string): boolean {
  return URL.canParse(text) && ['postgres:', 'postgresql:'].includes(new URL(text).protocol);
}

function parseByteSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(text.trim())!;
  const power = ' kmgt'.indexOf(m[2]!.toLowerCase() || ' ');
  return Math.floor(Number(m[1]) * 1024 ** power);
}
