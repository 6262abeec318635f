import { parseParameters } from './multipart.js';

export type AcceptEntry = { type: string; subtype: string; params: Record<string, string>; q: number };

/** What a route can produce: a media type, for multipart the type of its parts, and the transfer syntax. */
export type Offer = { mediaType: string; type?: string; transferSyntax?: string };

/** RFC 9110 12.5.1, leniently: quoted or bare parameters, q-values, junk pieces skipped. */
export function parseAccept(header: string | undefined): AcceptEntry[] {
  if (!header || !header.trim()) return [{ type: '*', subtype: '*', params: {}, q: 1 }];
  const entries: AcceptEntry[] = [];
  for (const piece of splitEntries(header)) {
    const { mediaType, params } = parseParameters(piece);
    const [type, subtype] = mediaType.split('/');
    if (!type || !subtype) continue;
    const q = params.q === undefined ? 1 : Number(params.q);
    delete params.q;
    entries.push({ type, subtype, params, q: Number.isFinite(q) ? Math.min(Math.max(q, 0), 1) : 1 });
  }
  const specificity = (e: AcceptEntry) => (e.type === '*' ? 0 : e.subtype === '*' ? 1 : 2) + Object.keys(e.params).length / 10;
  return entries.sort((a, b) => b.q - a.q || specificity(b) - specificity(a));
}

/** Commas separate entries except inside quoted parameter values. */
function splitEntries(header: string): string[] {
  const out: string[] = [];
  let current = '';
  let quoted = false;
  for (const ch of header) {
    if (ch === '"') quoted = !quoted;
    if (ch === ',' && !quoted) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out.filter((s) => s.trim());
}

/**
 * The first offer the most preferred acceptable entry allows. A missing or `*` transfer-syntax accepts
 * what is stored (DESIGN decision 5: never a 406 for `transfer-syntax=*`); q=0 refuses.
 */
export function negotiate(accept: AcceptEntry[], offers: Offer[]): Offer | undefined {
  const refused = accept.filter((e) => e.q === 0);
  for (const entry of accept) {
    if (entry.q === 0) continue;
    const hit = offers.find((offer) => matches(entry, offer) && !refused.some((r) => matches(r, offer) && specific(r)));
    if (hit) return hit;
  }
  return undefined;
}

function specific(entry: AcceptEntry): boolean {
  return entry.type !== '*' && entry.subtype !== '*';
}

function matches(entry: AcceptEntry, offer: Offer): boolean {
  const [type, subtype] = offer.mediaType.split('/');
  if (entry.type !== '*' && entry.type !== type) return false;
  if (entry.subtype !== '*' && entry.subtype !== subtype) return false;
  const partType = entry.params.type?.toLowerCase();
  if (partType && offer.type && partType !== offer.type && !typeMatches(partType, offer.type)) return false;
  const syntax = entry.params['transfer-syntax'];
  if (syntax && syntax !== '*' && offer.transferSyntax && syntax !== offer.transferSyntax) return false;
  return true;
}

function typeMatches(pattern: string, actual: string): boolean {
  const [pt, ps] = pattern.split('/');
  const [at, as] = actual.split('/');
  return (pt === '*' || pt === at) && (ps === '*' || ps === as);
}
