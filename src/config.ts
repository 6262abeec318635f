import { isIP } from 'node:net';
import path from 'node:path';
import { z } from 'zod';
import { isAeTitle } from './dicom/ae-title.js';
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

/** PACS_ADMIN_KEY opens everything; a guessable one is refused at start. */
const MIN_ADMIN_KEY_BITS = 128;

/** A time span such as 24h, 7d, 30m or 90s; 0 or off for none. */
const duration = z
  .string()
  .regex(/^(0|off|\d+(\.\d+)?\s*(ms|s|m|h|d))$/i, 'a time span such as 24h, 7d, 30m or 90s, or 0 / off')
  .transform(parseDuration);

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
  // A large multi-phase CT study is a few thousand instances; each part costs work and a line of the answer.
  PACS_MAX_PARTS_PER_REQUEST: z.coerce.number().int().min(1).default(10_000),
  PACS_OVERWRITE_DIFFERENT: bool.default(false),
  PACS_MIN_FREE_BYTES: bytes.default(512 * 1024 ** 2),
  PACS_TLS_CERT: z.string().min(1).optional(),
  PACS_TLS_KEY: z.string().min(1).optional(),
  PACS_HTTP_REDIRECT_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  PACS_IDLE_TIMEOUT: z.coerce.number().int().min(1).max(24 * 3600).default(120),
  // A UID root of the clinic's own (PS3.5 9, B.1): digits and dots, each component without a leading zero.
  PACS_UID_ROOT: z
    .string()
    .regex(/^(0|[1-9]\d*)(\.(0|[1-9]\d*))+$/, 'a UID root is numbers joined by dots, such as 1.2.826.0.1.3680043.10.1234, without leading zeros')
    .max(34, 'a UID root is at most 34 characters, so that the UIDs made under it stay within 64')
    .optional(),
  PACS_TRASH_DAYS: z.coerce.number().min(0).max(3650).default(30),
  PACS_STUDY_QUIET_SECONDS: z.coerce.number().int().min(1).max(24 * 3600).default(60),
  PACS_WEBHOOK_RETRY_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
  PACS_DICOM_PORT: z.coerce.number().int().min(0).max(65535).default(11112),
  // Spaces around an AE title are not significant (PS3.5 6.2).
  PACS_DICOM_AE_TITLE: z
    .string()
    .transform((v) => v.trim())
    .refine(isAeTitle, '1 to 16 characters, no backslash or control characters')
    .default('PACSLITE'),
  PACS_DICOM_ACCEPT_UNKNOWN: bool.default(false),
  PACS_DICOM_MAX_ASSOCIATIONS: z.coerce.number().int().min(1).max(1000).default(32),
  PACS_DICOM_MAX_ASSOCIATIONS_PER_ADDRESS: z.coerce.number().int().min(1).max(1000).default(8),
  // At most 1 MB: dcmjs-dimse joins a PDU's chunks again at each one that arrives.
  PACS_DICOM_MAX_PDU: bytes.pipe(z.number().int().min(4096).max(1024 * 1024)).default(131_072),
  PACS_DICOM_TIMEOUT: z.coerce.number().int().min(1).max(24 * 3600).default(60),
  PACS_DICOM_TLS_PORT: z.coerce.number().int().min(1).max(65535).optional(),
  PACS_DICOM_TLS_CERT: z.string().min(1).optional(),
  PACS_DICOM_TLS_KEY: z.string().min(1).optional(),
  PACS_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  PACS_ANONYMOUS_READ: bool.default(false),
  PACS_SESSION_IDLE_TIMEOUT: duration.default(30 * 60_000),
  PACS_SESSION_MAX_AGE: duration.default(12 * 3600_000),
  PACS_SIGN_IN_LOCKOUT_AFTER: z.coerce.number().int().min(1).default(5),
  PACS_SIGN_IN_LOCKOUT: duration.default(15 * 60_000),
  PACS_ADMIN_KEY: z
    .string()
    .min(24, 'at least 24 characters; make one with `openssl rand -base64 32`')
    .regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces')
    // A credential with a dot is taken for a viewer token (auth/middleware.ts), so such a key could never be used.
    .regex(/^[^.]+$/, 'without a dot, which marks a viewer token')
    .refine((key) => estimatedKeyBits(key) >= MIN_ADMIN_KEY_BITS, `too easy to guess (under ${MIN_ADMIN_KEY_BITS} bits by its length and variety of characters); make one with \`openssl rand -base64 32\``)
    .optional(),
  PACS_TRUSTED_PROXIES: z
    .string()
    .refine((list) => proxyList(list).every(isAddressOrCidr), 'a comma-separated list of IP addresses and CIDR ranges, such as 127.0.0.1,10.0.0.0/8,::1')
    .default(''),
  PACS_AUTH_FAILURES_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(20),
  PACS_AUDIT_REFUSED_PER_MINUTE: z.coerce.number().int().min(1).max(1_000_000).default(60),
  PACS_VIEWER_URL: z.url().optional(),
  PACS_VIEWER_TOKEN_TTL: seconds.default(3600),
  PACS_VIEWER_TOKEN_MAX_TTL: seconds.default(12 * 3600),
  PACS_VIEWER_SIGNING_KEY: signingKey.optional(),
  PACS_VIEWER_SIGNING_KEY_PREVIOUS: signingKey.optional(),
  PACS_RENDER_MAX_FRAME_BYTES: bytes.default(256 * 1024 ** 2),
  PACS_VERIFY_INTERVAL: duration.default(7 * 86_400_000),
  PACS_RENDER_MEMORY_BYTES: bytes.refine((n) => n >= 16 * 1024 ** 2, 'at least 16MiB').default(512 * 1024 ** 2),
  PACS_DERIVED_CACHE_BYTES: bytes.default(1024 ** 3),
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
  /** Largest instance, and largest data set a deflated one inflates to. */
  maxInstanceBytes: number;
  /** Parts one STOW-RS request may hold; past it the request is answered 413 and nothing is stored. */
  maxPartsPerRequest: number;
  overwriteDifferent: boolean;
  /** Uploads are refused (507) before they start while the data folder's disk has less free; 0: never. */
  minFreeBytes: number;
  /** Present when PACS_TLS_CERT and PACS_TLS_KEY are set: the server speaks HTTPS itself (PEM file paths). */
  tls?: Readonly<{ certFile: string; keyFile: string; redirectPort?: number }>;
  /** Seconds a connection may pass without a byte received or sent before it is closed; a request's whole length is not limited. */
  idleTimeoutSeconds: number;
  /**
   * The DICOM network service (DIMSE), when PACS_DICOM_PORT is not 0 or PACS_DICOM_TLS_PORT is set (`port` is then
   * undefined: TLS only): the AE title it answers to, whether callers
   * outside the list of known application entities may do more than C-ECHO, associations at once, the largest PDU
   * it receives, and seconds an association may stay silent.
   */
  dicom?: Readonly<{
    port?: number;
    aeTitle: string;
    acceptUnknown: boolean;
    maxAssociations: number;
    /** Of those, at most this many from one address: one host on the LAN cannot keep every modality out. */
    maxAssociationsPerAddress: number;
    maxPdu: number;
    timeoutSeconds: number;
    /** The second listener, DICOM over TLS (PS3.15 B.1), and the PEM files of its certificate and key. */
    tls?: Readonly<{ port: number; certFile: string; keyFile: string }>;
  }>;
  logLevel: string;
  /** Opt-in for a trusted LAN: reads (QIDO, WADO, study summaries) without a credential. */
  anonymousRead: boolean;
  /** Staff sessions (ms; Infinity for none): ended after `idle` without a request, and `maxAge` after sign-in whatever happens. */
  session: Readonly<{ idle: number; maxAge: number }>;
  /** Failed sign-ins in a row that lock an account (or an address a minute), and for how long the account stays locked (ms). */
  signInLockout: Readonly<{ after: number; duration: number }>;
  adminKey?: string;
  /** Addresses (IPs and CIDRs) whose X-Forwarded-* headers are believed; none by default. */
  trustedProxies: readonly string[];
  /** Distinct failed credentials one address (or one key prefix) may send a minute before it gets 429. */
  authFailuresPerMinute: number;
  /** Refused requests one address may add to the audit trail a minute; the rest are counted in one summary event. */
  auditRefusedPerMinute: number;
  viewerUrl?: string;
  viewerToken: Readonly<{ defaultTtl: number; maxTtl: number; signingKey?: string; previousSigningKey?: string }>;
  /** Largest decoded frame (rows × columns × samples × bytes a sample) that rendering will decode; larger ones get 413. */
  renderMaxFrameBytes: number;
  /** Time over which the scheduled verify pass spreads its reading of every object (ms); 0 when it is off. */
  verifyInterval: number;
  /** How long a deletion stays in the trash, restorable, before it is purged (ms); 0: deletes are final at once. */
  trashMs: number;
  /** The root of the UIDs of instances this server makes (photos, documents); undefined: 2.25 UUID-derived UIDs. */
  uidRoot?: string;
  /** Study-available events (issue 16): how long a study must go without a new instance before it is announced (ms), and the first retry's delay (ms), doubled at each failure. */
  events: Readonly<{ quietMs: number; retryMs: number }>;
  /** Memory the renderings decoding at once may hold together (decoded pixels, 8-bit image); the rest wait their turn. */
  renderMemoryBytes: number;
  /** Bytes the derived objects (rendered images, thumbnails) may take in the store; least recently used go first. */
  derivedCacheBytes: number;
  /** Present when PACS_S3_BUCKET is set: objects go to that bucket instead of `<storageDir>/objects`. */
  s3?: S3Settings;
  /** Present when PACS_DATABASE_URL is set: the index is in that Postgres database instead of `<storageDir>/index.sqlite`. Holds a password. */
  databaseUrl?: string;
}>;

export class ConfigError extends Error {}

/** DICOM over TLS on PACS_DICOM_TLS_PORT, with its own certificate or the one HTTPS uses. */
function dicomTls(e: z.infer<typeof schema>): NonNullable<Config['dicom']>['tls'] {
  if (!e.PACS_DICOM_TLS_PORT) return undefined;
  const [cert, key] = e.PACS_DICOM_TLS_CERT || e.PACS_DICOM_TLS_KEY ? [e.PACS_DICOM_TLS_CERT, e.PACS_DICOM_TLS_KEY] : [e.PACS_TLS_CERT, e.PACS_TLS_KEY];
  if (!cert || !key) {
    throw new ConfigError('Invalid configuration:\n  PACS_DICOM_TLS_PORT: needs a certificate and its key: PACS_DICOM_TLS_CERT and PACS_DICOM_TLS_KEY (or PACS_TLS_CERT and PACS_TLS_KEY, which HTTPS uses)');
  }
  return Object.freeze({ port: e.PACS_DICOM_TLS_PORT, certFile: path.resolve(cert), keyFile: path.resolve(key) });
}

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
  // Half a TLS setting would silently serve plain HTTP; a redirect port without TLS would redirect to nothing.
  if (Boolean(e.PACS_TLS_CERT) !== Boolean(e.PACS_TLS_KEY) || (e.PACS_HTTP_REDIRECT_PORT && !e.PACS_TLS_CERT)) {
    throw new ConfigError('Invalid configuration:\n  PACS_TLS_CERT, PACS_TLS_KEY: set both (PEM files of the certificate and its private key) to serve HTTPS; PACS_HTTP_REDIRECT_PORT needs them too');
  }
  // Links handed out begin with the public URL: an http:// one would send viewer tokens in the clear past our own HTTPS.
  if (e.PACS_TLS_CERT && e.PACS_PUBLIC_URL?.startsWith('http:')) {
    throw new ConfigError('Invalid configuration:\n  PACS_PUBLIC_URL: the server speaks HTTPS (PACS_TLS_CERT), so its public URL begins https://');
  }
  return Object.freeze({
    port: e.PORT,
    host: e.HOST,
    storageDir: path.resolve(e.PACS_STORAGE_DIR),
    publicUrl: e.PACS_PUBLIC_URL?.replace(/\/+$/, ''),
    corsOrigins: Object.freeze(e.PACS_CORS_ORIGINS.split(',').map((s) => s.trim()).filter(Boolean)),
    maxRequestBytes: e.PACS_MAX_REQUEST_BYTES,
    maxInstanceBytes: e.PACS_MAX_INSTANCE_BYTES,
    maxPartsPerRequest: e.PACS_MAX_PARTS_PER_REQUEST,
    overwriteDifferent: e.PACS_OVERWRITE_DIFFERENT,
    minFreeBytes: e.PACS_MIN_FREE_BYTES,
    tls: e.PACS_TLS_CERT && e.PACS_TLS_KEY
      ? Object.freeze({ certFile: path.resolve(e.PACS_TLS_CERT), keyFile: path.resolve(e.PACS_TLS_KEY), redirectPort: e.PACS_HTTP_REDIRECT_PORT })
      : undefined,
    idleTimeoutSeconds: e.PACS_IDLE_TIMEOUT,
    // PACS_DICOM_PORT=0 with a TLS port: DICOM over TLS only, for sites that allow nothing unencrypted.
    dicom:
      e.PACS_DICOM_PORT === 0 && !e.PACS_DICOM_TLS_PORT
        ? undefined
        : {
            port: e.PACS_DICOM_PORT === 0 ? undefined : e.PACS_DICOM_PORT,
            aeTitle: e.PACS_DICOM_AE_TITLE,
            acceptUnknown: e.PACS_DICOM_ACCEPT_UNKNOWN,
            maxAssociations: e.PACS_DICOM_MAX_ASSOCIATIONS,
            maxAssociationsPerAddress: e.PACS_DICOM_MAX_ASSOCIATIONS_PER_ADDRESS,
            maxPdu: e.PACS_DICOM_MAX_PDU,
            timeoutSeconds: e.PACS_DICOM_TIMEOUT,
            tls: dicomTls(e),
          },
    logLevel: e.PACS_LOG_LEVEL,
    anonymousRead: e.PACS_ANONYMOUS_READ,
    session: Object.freeze({ idle: e.PACS_SESSION_IDLE_TIMEOUT || Infinity, maxAge: e.PACS_SESSION_MAX_AGE || Infinity }),
    signInLockout: Object.freeze({ after: e.PACS_SIGN_IN_LOCKOUT_AFTER, duration: e.PACS_SIGN_IN_LOCKOUT }),
    adminKey: e.PACS_ADMIN_KEY,
    trustedProxies: Object.freeze(proxyList(e.PACS_TRUSTED_PROXIES)),
    authFailuresPerMinute: e.PACS_AUTH_FAILURES_PER_MINUTE,
    auditRefusedPerMinute: e.PACS_AUDIT_REFUSED_PER_MINUTE,
    viewerUrl: e.PACS_VIEWER_URL?.replace(/\/+$/, ''),
    viewerToken: Object.freeze({
      defaultTtl: Math.min(e.PACS_VIEWER_TOKEN_TTL, e.PACS_VIEWER_TOKEN_MAX_TTL),
      maxTtl: e.PACS_VIEWER_TOKEN_MAX_TTL,
      signingKey: e.PACS_VIEWER_SIGNING_KEY,
      previousSigningKey: e.PACS_VIEWER_SIGNING_KEY_PREVIOUS,
    }),
    renderMaxFrameBytes: e.PACS_RENDER_MAX_FRAME_BYTES,
    verifyInterval: e.PACS_VERIFY_INTERVAL,
    uidRoot: e.PACS_UID_ROOT,
    trashMs: Math.round(e.PACS_TRASH_DAYS * 86_400_000),
    events: Object.freeze({ quietMs: e.PACS_STUDY_QUIET_SECONDS * 1000, retryMs: e.PACS_WEBHOOK_RETRY_SECONDS * 1000 }),
    renderMemoryBytes: e.PACS_RENDER_MEMORY_BYTES,
    derivedCacheBytes: e.PACS_DERIVED_CACHE_BYTES,
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

/**
 * A deliberately simple estimate of a key's randomness: the characters that do not merely continue a run (`aaa`,
 * `0123`, `fedc`) times the lesser of the bits a character of its classes could carry and the Shannon entropy of
 * its characters. `aaaa…` and `key-0123456789abcdef` score low; `openssl rand -base64 32` and `-hex 32` about 200.
 */
export function estimatedKeyBits(key: string): number {
  const codes = [...key].map((ch) => ch.codePointAt(0)!);
  const surprising = codes.filter((code, i) => i === 0 || Math.abs(code - codes[i - 1]!) > 1).length;
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/];
  const sizes = [26, 26, 10, 33];
  const alphabet = classes.reduce((sum, re, i) => sum + (re.test(key) ? sizes[i]! : 0), 0);
  const counts = new Map<string, number>();
  for (const ch of key) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  const shannon = [...counts.values()].reduce((h, n) => h - (n / key.length) * Math.log2(n / key.length), 0);
  return surprising * Math.min(Math.log2(Math.max(alphabet, 1)), shannon);
}

function proxyList(text: string): string[] {
  return text.split(',').map((s) => s.trim()).filter(Boolean);
}

function isAddressOrCidr(text: string): boolean {
  const [address = '', bits, extra] = text.split('/');
  const family = isIP(address);
  if (family === 0 || extra !== undefined) return false;
  return bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
}

function isPostgresUrl(text: string): boolean {
  return URL.canParse(text) && ['postgres:', 'postgresql:'].includes(new URL(text).protocol);
}

function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)$/i.exec(text.trim());
  if (!m) return 0;
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2]!.toLowerCase() as 'ms'];
  return Math.round(Number(m[1]) * unit);
}

function parseByteSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(text.trim())!;
  const power = ' kmgt'.indexOf(m[2]!.toLowerCase() || ' ');
  return Math.floor(Number(m[1]) * 1024 ** power);
}
