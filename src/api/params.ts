import type { z } from 'zod';
import { BadRequest } from '../errors.js';

/* Query parameters the EMR's routes share. */

/** EMRs send the value they hold; a wildcard would turn one order into a search. */
export function exactParam(value: string | undefined, name: string): string | undefined {
  if (value !== undefined && /[*?\\]/.test(value)) throw new BadRequest(`${name} must be an exact value, without * ? or \\`);
  return value?.trim() || undefined;
}

/** expires_in: seconds a link lives, at most `max`; undefined for the default. */
export function lifetimeParam(raw: string | undefined, max: number): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new BadRequest(`expires_in is a number of seconds, not "${raw}"`);
  if (Number(raw) > max) throw new BadRequest(`expires_in may be at most ${max} seconds (PACS_VIEWER_TOKEN_MAX_TTL)`);
  return Number(raw);
}

/** limit or offset: a whole number up to `max`; undefined for the default. */
export function countParam(raw: string | undefined, name: string, max: number): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) > max) throw new BadRequest(`${name} is a whole number up to ${max}, not "${raw}"`);
  return Number(raw);
}

/**
 * A route's query parameters by its zod schema: an unknown or malformed one is a 400 that names it. `token` is not
 * the route's: it is a credential a GET may carry in its URL, taken by authenticate().
 */
export function parseQuery<T extends z.ZodObject>(schema: T, query: Record<string, string>): z.infer<T> {
  const { token: _credential, ...own } = query;
  const parsed = schema.safeParse(own);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0]!;
  if (issue.code === 'unrecognized_keys') throw new BadRequest(`unknown parameter ${issue.keys.join(', ')}; this route takes ${Object.keys(schema.shape).join(', ')}`);
  throw new BadRequest(`${issue.path.join('.')}: ${issue.message}`);
}

/** A JSON request body by its zod schema: not JSON, or an unknown or malformed field, is a 400 that names it. */
export async function parseBody<T extends z.ZodType>(schema: T, request: { json(): Promise<unknown> }): Promise<z.infer<T>> {
  const body = await request.json().catch(() => {
    throw new BadRequest('the body is not JSON; send JSON, with Content-Type: application/json');
  });
  const parsed = schema.safeParse(body);
  if (parsed.success) return parsed.data;
  // Every problem at once: a form or a script is mended in one go.
  const problems = parsed.error.issues.map((issue) =>
    issue.code === 'unrecognized_keys' ? `unknown field ${issue.keys.map((k) => `"${k}"`).join(', ')} in the body` : `${issue.path.join('.') || 'body'}: ${issue.message}`,
  );
  throw new BadRequest(problems.join('; '));
}
