import path from 'node:path';
import { z } from 'zod';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const bytes = z
  .string()
  .regex(/^\d+(\.\d+)?\s*([kmgt]i?b?)?$/i, 'a byte size such as 500MB, 2GiB or 1048576')
  .transform(parseByteSize);

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
});

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
}>;

export class ConfigError extends Error {}

/** Reads the environment once; every bad variable is named in one message. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.fromEntries(Object.keys(schema.shape).map((k) => [k, env[k] === '' ? undefined : env[k]]));
  const parsed = schema.safeParse(known);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.')}=${JSON.stringify(known[String(i.path[0])])}: ${i.message}`);
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
  });
}

function parseByteSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?$/i.exec(text.trim())!;
  const power = ' kmgt'.indexOf(m[2]!.toLowerCase() || ' ');
  return Math.floor(Number(m[1]) * 1024 ** power);
}
