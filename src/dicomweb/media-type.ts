/**
 * Media types for DICOMweb: Content-Type parameters and Accept negotiation, lenient in (DESIGN decision 5).
 * RFC 9110 8.3.1 (media types), 12.5.1 (Accept); PS3.18 8.7 (DICOMweb media types, transfer-syntax).
 */

/** One media range of an Accept header; names and types lower-case, `q` without its parameter. */
export type AcceptEntry = { type: string; subtype: string; params: Record<string, string>; q: number };

/**
 * What a route can produce. `type` is the media type of the parts of a multipart/related answer,
 * `transferSyntax` the syntax of what is sent (absent for JSON and the like).
 */
export type Offer = { mediaType: string; type?: string; transferSyntax?: string };

/** A media type split into its pieces; `mediaType` is `type/subtype`, lower-case. */
export type MediaType = { mediaType: string; type: string; subtype: string; params: Record<string, string> };

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Parses `type/subtype; name=value; name="quoted value"` leniently: any case, any whitespace, any order.
 * Parameter names are lower-cased, values kept as sent (unquoted); pieces without a name or `=` are skipped,
 * and the first of a repeated name wins. undefined when the text does not start with `type/subtype`.
 */
export function parseMediaType(text: string): MediaType | undefined {
  const [head = '', ...rest] = splitOutsideQuotes(text, ';');
  // Java clients send a bare `*` for `*/*`.
  const names = head.trim() === '*' ? ['*', '*'] : head.split('/').map((s) => s.trim().toLowerCase());
  const [type = '', subtype = ''] = names;
  if (names.length !== 2 || !TOKEN.test(type) || !TOKEN.test(subtype) || (type === '*' && subtype !== '*')) return undefined;
  const params: Record<string, string> = {};
  for (const piece of rest) {
    const eq = piece.indexOf('=');
    const name = piece.slice(0, eq).trim().toLowerCase();
    if (eq < 0 || !TOKEN.test(name) || name === '__proto__' || Object.hasOwn(params, name)) continue;
    params[name] = unquote(piece.slice(eq + 1).trim());
  }
  return { mediaType: `${type}/${subtype}`, type, subtype, params };
}

function unquote(value: string): string {
  if (!value.startsWith('"')) return value;
  const inner = value.endsWith('"') && value.length >= 2 ? value.slice(1, -1) : value.slice(1);
  return inner.replace(/\\(.)/g, '$1');
}

/** Names clients send for media types PS3.18 names otherwise: dicomweb-client (OHIF's) asks for the `x-` forms, and for HTJ2K by an early draft's name. */
const ALIASES: Record<string, string> = { 'image/x-dicom-rle': 'image/dicom-rle', 'image/x-jls': 'image/jls', 'image/jhc': 'image/jphc' };

/**
 * RFC 9110 12.5.1, leniently: quoted or bare parameters, whitespace anywhere, a missing or empty header means
 * `*\/*`, and pieces that do not parse (or carry an unreadable q) are skipped, never thrown.
 * Sorted by q, then by specificity (exact type over `type/*` over `*\/*`, more parameters first), then as sent.
 */
export function parseAccept(header: string | undefined): AcceptEntry[] {
  if (!header || !header.trim()) return [{ type: '*', subtype: '*', params: {}, q: 1 }];
  const entries: AcceptEntry[] = [];
  for (const piece of splitOutsideQuotes(header, ',')) {
    if (!piece.trim()) continue;
    const parsed = parseMediaType(piece);
    if (!parsed) continue;
    const { q: weight, ...params } = parsed.params;
    const q = weight === undefined ? 1 : weight.trim() === '' ? NaN : Number(weight);
    if (Number.isNaN(q)) continue;
    const [type = parsed.type, subtype = parsed.subtype] = ALIASES[parsed.mediaType]?.split('/') ?? [];
    if (params.type) params.type = ALIASES[params.type.trim().toLowerCase()] ?? params.type;
    entries.push({ type, subtype, params, q: Math.min(Math.max(q, 0), 1) });
  }
  // Array.prototype.sort is stable: equal entries keep the client's order.
  return entries.sort((a, b) => b.q - a.q || specificity(b) - specificity(a));
}

/** Splits on a separator outside quoted strings (where a backslash escapes the next character). */
function splitOutsideQuotes(text: string, separator: string): string[] {
  const out: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === '\\') i++;
    else if (ch === '"') quoted = !quoted;
    else if (ch === separator && !quoted) {
      out.push(text.slice(start, i));
      start = i + 1;
    }
  }
  out.push(text.slice(start));
  return out;
}

function specificity(entry: AcceptEntry): number {
  const rank = entry.type === '*' ? 0 : entry.subtype === '*' ? 1 : 2;
  const ts = entry.params['transfer-syntax'];
  // A named transfer syntax says more than `*`; other parameters (type, charset) count once each.
  const paramCount = Object.keys(entry.params).length - (ts === '*' ? 1 : 0);
  return rank * 100 + paramCount;
}

/**
 * The offer to send, or undefined for a 406. Each offer gets the q of the most specific entry that matches it
 * (RFC 9110 12.5.1), so `q=0` on a matching entry excludes it even when `*\/*` is also sent; the best q wins,
 * then the offer matched by the more specific entry, then the route's order. A route states what it can
 * produce in one line: `negotiate(parseAccept(c.req.header('accept')), [{ mediaType: 'application/dicom+json' }])`.
 *
 * transfer-syntax: absent or `*` accepts whatever the offer carries (PS3.18 makes absent mean Explicit VR
 * Little Endian, but we serve as stored rather than refuse; DESIGN decision 5). A named syntax the offer
 * does not carry makes that entry not match, so the answer is a 406 only if no other entry matches.
 */
export function negotiate(accept: AcceptEntry[], offers: Offer[]): Offer | undefined {
  let best: { offer: Offer; q: number; specificity: number } | undefined;
  for (const offer of offers) {
    let match: AcceptEntry | undefined;
    for (const entry of accept) {
      if (matches(entry, offer) && (!match || specificity(entry) > specificity(match))) match = entry;
    }
    if (!match || match.q <= 0) continue;
    const s = specificity(match);
    if (!best || match.q > best.q || (match.q === best.q && s > best.specificity)) best = { offer, q: match.q, specificity: s };
  }
  return best?.offer;
}

function matches(entry: AcceptEntry, offer: Offer): boolean {
  const [type, subtype] = offer.mediaType.toLowerCase().split('/');
  if (entry.type !== '*' && entry.type !== type) return false;
  if (entry.subtype !== '*' && entry.subtype !== subtype) return false;
  // multipart/related; type=... names the parts; absent, any part type will do.
  const partType = entry.params.type?.trim().toLowerCase();
  if (partType && offer.type && !rangeIncludes(partType, offer.type.toLowerCase())) return false;
  const syntax = entry.params['transfer-syntax']?.trim();
  if (syntax && syntax !== '*' && offer.transferSyntax && syntax !== offer.transferSyntax) return false;
  return true;
}

function rangeIncludes(range: string, mediaType: string): boolean {
  const [rt, rs] = range.split('/');
  const [mt, ms] = mediaType.split('/');
  return (rt === '*' || rt === mt) && (rs === '*' || rs === ms);
}
