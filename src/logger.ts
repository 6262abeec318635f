import pino from 'pino';

/** One logger; secrets are redacted by configuration, not by care (STYLE.md). */
export function createLogger(level: string) {
  return pino({
    level,
    redact: { paths: ['req.headers.authorization', 'headers.authorization', 'token', '*.token', 'key', '*.key'], censor: '[redacted]' },
  });
}
