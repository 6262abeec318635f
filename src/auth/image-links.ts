import { SignJWT, errors, jwtVerify, type JWTHeaderParameters } from 'jose';
import { isValidUid } from '../dicom/uid.js';
import { Forbidden } from '../errors.js';
import type { SigningKeys } from './signing-keys.js';
import { CLOCK_TOLERANCE_SECONDS, tokenParties } from './viewer-tokens.js';

/** What a signed image link answers: the instance's thumbnail, a rendered JPEG, or the DICOM file itself. */
export const IMAGE_KINDS = ['thumbnail', 'rendered', 'dicom'] as const;
export type ImageKind = (typeof IMAGE_KINDS)[number];

/** The one instance a link names, by its place in the index. */
export type LinkedInstance = { studyUid: string; seriesUid: string; sopUid: string };

/** Its own type, so that a viewer token is never taken for an image link, nor an image link for a viewer token. */
const LINK_TYPE = 'pacs-image+jwt';
const ALGORITHM = 'HS256';
/** Ours are about 500 characters; anything far longer is not one of ours and is not parsed. */
const MAX_LINK_CHARS = 2048;

/**
 * Signed, expiring links to one image (issue 16), for an EMR's `<img>` tag or a download with no header: the path
 * names the instance and the kind of answer, the signature (`?sig=`, a JWS with the server's viewer-token keys) names
 * them too with an expiry, so that editing either refuses the link. It grants nothing else: it is not a credential
 * anywhere (a viewer token's type differs), and a viewer token is not a link.
 */
export class ImageLinks {
  constructor(
    private readonly keys: SigningKeys,
    /** PACS_PUBLIC_URL: names the installation, as in viewer tokens. */
    private readonly publicUrl?: string,
  ) {}

  /** The signature of a link to `instance`'s `kind`, living `ttl` seconds. */
  async sign(instance: LinkedInstance, kind: ImageKind, ttl: number): Promise<{ sig: string; expiresAt: Date }> {
    const key = await this.keys.signing();
    const now = Math.floor(Date.now() / 1000);
    const { iss, aud } = tokenParties(key.secret, this.publicUrl);
    const sig = await new SignJWT({ kind, study: instance.studyUid, series: instance.seriesUid })
      .setProtectedHeader({ alg: ALGORITHM, typ: LINK_TYPE, kid: key.kid })
      .setIssuer(iss)
      .setAudience(`${aud}/images`)
      .setSubject(instance.sopUid)
      .setIssuedAt(now)
      .setExpirationTime(now + ttl)
      .sign(key.secret);
    return { sig, expiresAt: new Date((now + ttl) * 1000) };
  }

  /**
   * The instance a link opens, when `sig` was signed here for the SOP Instance UID and kind its path names and has
   * not expired; a 403 saying what is wrong otherwise. Also its expiry, which caching may not outlive.
   */
  async verify(sig: string | undefined, sopUid: string, kind: string): Promise<LinkedInstance & { expiresAt: number }> {
    if (!sig) throw new Forbidden('this image link has no signature (?sig=); ask the EMR for a new link');
    if (sig.length > MAX_LINK_CHARS) throw new Forbidden('this image link\'s signature is longer than any this server makes');
    let payload, key;
    try {
      ({ payload, key } = await jwtVerify(sig, (header: JWTHeaderParameters) => this.keyFor(header), { algorithms: [ALGORITHM], typ: LINK_TYPE, clockTolerance: CLOCK_TOLERANCE_SECONDS, requiredClaims: ['exp', 'iat', 'sub'] }));
    } catch (e) {
      throw new Forbidden(reasonOf(e));
    }
    const { iss, aud } = tokenParties(key as Uint8Array, this.publicUrl);
    if (payload.iss !== iss || payload.aud !== `${aud}/images`) throw new Forbidden('this image link was made by another installation');
    const { sub, kind: signedKind, study, series } = payload as Record<string, unknown>;
    if (sub !== sopUid || signedKind !== kind) throw new Forbidden('this image link was signed for another image or another kind of answer: links cannot be edited; ask the EMR for a new one');
    if (typeof study !== 'string' || typeof series !== 'string' || ![study, series, sopUid].every(isValidUid)) throw new Forbidden('this image link does not name an instance');
    return { studyUid: study, seriesUid: series, sopUid, expiresAt: payload.exp! * 1000 };
  }

  private async keyFor(header: JWTHeaderParameters): Promise<Uint8Array> {
    const key = header.kid === undefined ? undefined : await this.keys.verifying(header.kid);
    if (!key) throw new UnknownKey();
    return key.secret;
  }
}

class UnknownKey extends Error {}

function reasonOf(e: unknown): string {
  if (e instanceof UnknownKey) return 'this image link was signed with a key this server no longer has; ask the EMR for a new link';
  if (e instanceof errors.JWTExpired) return 'this image link has expired; ask the EMR for a new link';
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'this image link\'s signature does not verify: it was altered or signed elsewhere';
  if (e instanceof errors.JWTClaimValidationFailed) return `this image link's ${e.claim} claim is not valid here`;
  return 'this is not an image link of this server';
}
