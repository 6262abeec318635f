import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { isValidUid } from '../../../src/dicom/uid.js';
import { Unauthorized } from '../../../src/errors.js';
import { Crash, refusesOnlyWith, type Target } from '../harness.js';
import { openApp } from '../../helpers/app.js';

/**
 * How a token to verify is made from one this server has just issued (so that a kept input replays while its clock
 * runs on): claims and header fields changed and signed with the server's key, characters edited, or any text.
 */
type Input = { forge: { header: Record<string, unknown>; claims: Record<string, unknown>; raw: string | null } } | { edits: Edit[] } | { text: string };

const STUDY = '1.2.826.0.1.3680043.10.543.1';
/** Fixed, so that a kept token forged with it (and the installation named after it) is forged the same way when replayed. */
const SECRET = createHash('sha256').update('pacs-lite fuzz signing key').digest();
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

const oddValue = fc.oneof(
  fc.constantFrom<unknown>(null, true, '', 0, -1, 1e308, -1e308, 2 ** 53, '1.2.3', '1.2\u00003', STUDY, [STUDY], { sub: STUDY }, 'study:read', 'pacs-lite'),
  fc.integer(),
  fc.string({ maxLength: 30 }),
);

/** Claims and header fields changed from the server's own, then signed with the server's key: only valid claims may pass. */
const claimChanges = fc.dictionary(fc.constantFrom('sub', 'scope', 'exp', 'iat', 'nbf', 'jti', 'iss', 'aud', '__proto__', 'constructor'), oddValue, { maxKeys: 3 });
const headerChanges = fc.dictionary(fc.constantFrom('alg', 'typ', 'kid', 'crit', 'b64', 'jku', 'zip'), fc.oneof(oddValue, fc.constantFrom<unknown>('none', 'HS512', 'RS256', 'HS256', ['exp'], false)), { maxKeys: 2 });

type Edit = { op: 'flip' | 'delete' | 'insert'; at: number; char: number } | { op: 'truncate'; at: number };
const edit: fc.Arbitrary<Edit> = fc.oneof(
  fc.record({ op: fc.constantFrom('flip' as const, 'delete' as const, 'insert' as const), at: fc.nat(), char: fc.nat({ max: B64URL.length + 2 }) }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
);

function applyEdits(token: string, edits: Edit[]): string {
  let t = token;
  for (const e of edits) {
    const at = e.at % (t.length + 1);
    if (e.op === 'truncate') t = t.slice(0, at);
    else {
      const char = (B64URL + '.= ')[e.char]!;
      t = e.op === 'insert' ? t.slice(0, at) + char + t.slice(at) : t.slice(0, at) + (e.op === 'flip' ? char : '') + t.slice(at + 1);
    }
  }
  return t;
}

const segments = (token: string) => token.split('.').map((s) => Buffer.from(s, 'base64url'));
/** Base64url text may differ in ways that decode to the same bytes: then it is the same token. */
function sameSegments(a: string, b: string): boolean {
  const [x, y] = [segments(a), segments(b)];
  return x.length === y.length && x.every((s, i) => s.equals(y[i]!));
}
const json = (segment: string) => JSON.parse(Buffer.from(segment, 'base64url').toString()) as Record<string, unknown>;

/** Viewer-token verification: tokens of this server altered character by character, and forged with odd claims. */
export const viewerToken: Target<Input> = {
  name: 'viewer-token',
  extension: '.json',
  async open() {
    const secret = SECRET;
    const server = await openApp({ PACS_VIEWER_SIGNING_KEY: secret.toString('base64') });
    const tokens = server.services.auth.tokens;
    const issued = (await tokens.issue(STUDY)).token;
    const [header, payload] = issued.split('.') as [string, string];
    const sign = (h: unknown, p: unknown, rawPayload: string | undefined) => {
      const head = Buffer.from(JSON.stringify(h)).toString('base64url');
      const body = Buffer.from(rawPayload ?? JSON.stringify(p)).toString('base64url');
      return `${head}.${body}.${createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')}`;
    };
    const forged = fc
      .record({ header: headerChanges, claims: claimChanges, raw: fc.option(fc.string({ maxLength: 40 }), { freq: 8 }) })
      .map((forge) => ({ forge }));
    const tokenOf = (input: Input) => {
      if ('forge' in input) return sign({ ...json(header), ...input.forge.header }, { ...json(payload), ...input.forge.claims }, input.forge.raw ?? undefined);
      return 'edits' in input ? applyEdits(issued, input.edits) : input.text;
    };
    return {
      arbitrary: fc.oneof(forged, fc.array(edit, { minLength: 1, maxLength: 4 }).map((edits) => ({ edits })), fc.string({ maxLength: 3000 }).map((text) => ({ text }))),
      async check(input) {
        const token = tokenOf(input);
        const principal = await refusesOnlyWith([Unauthorized], () => tokens.verify(token));
        if (!principal) return;
        if (!isValidUid(principal.studyUid)) throw new Crash(`a token was accepted for the study "${principal.studyUid}"`);
        if ('edits' in input && !sameSegments(token, issued)) throw new Crash('an altered token was accepted');
        const claims = json(token.split('.')[1]!);
        const live = typeof claims.exp === 'number' && claims.exp > Date.now() / 1000 - 5;
        if (claims.scope !== 'study:read' || claims.sub !== principal.studyUid || !live) throw new Crash(`a token was accepted with the claims ${JSON.stringify(claims)}`);
      },
      encode: (input) => Buffer.from(JSON.stringify(input)),
      decode: (file) => JSON.parse(file.toString()) as Input,
      close: () => server.close(),
    };
  },
};
