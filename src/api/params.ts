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
