import { createHash, createHmac, randomUUID } from 'node:crypto';
import { SignJWT, errors, jwtVerify, type JWTHeaderParameters } from 'jose';
import { LONGEST_TOKEN_TTL } from '../config.js';
import { isValidUid } from '../dicom/uid.js';
import { Unauthorized } from '../errors.js';
import type { PatientRef, Principal } from './principal.js';
import type { AccessRecords } from './records.js';
import type { SigningKeys } from './signing-keys.js';

/** The one algorithm tokens are signed with, and so the only one accepted. */
const ALGORITHM = 'HS256';
const TOKEN_TYPE = 'pacs-viewer+jwt';
const SCOPE = 'study:read';
/** Replicas' clocks may differ a little; a token's life is never stretched by more. */
export const CLOCK_TOLERANCE_SECONDS = 5;
/** Ours are about 400 characters; anything far longer is not one of ours and is not parsed. */
const MAX_TOKEN_CHARS = 2048;

/** Tokens whose signature verified, by their text; as many as the clinic's open viewers, with room. */
const VERIFIED_TOKENS_KEPT = 1000;
const EXPIRED = 'the token has expired; ask the EMR for a new link';
const UNKNOWN_KEY = 'the token was not signed by a key of this server (or its key has been retired)';

type VerifiedClaims = { jti: string; studyUid: string; patient?: PatientRef; iat: number; exp: number; kid: string };

export type IssuedToken = { token: string; jti: string; studyUid: string; expiresIn: number; expiresAt: Date };
/** PatientID is LO: 64 characters; IssuerOfPatientID too. */
const MAX_PATIENT_CHARS = 64;

/** Study-scoped, read-only viewer tokens (JWS) for links the EMR opens in OHIF. */
export class ViewerTokens {
  constructor(
    private readonly keys: SigningKeys,
    private readonly records: AccessRecords,
    readonly lifetime: { defaultTtl: number; maxTtl: number },
    /** PACS_PUBLIC_URL: when set, it names the installation in every token's iss and aud. */
    private readonly publicUrl?: string,
  ) {}

  private readonly verified = new Map<string, VerifiedClaims>();

  /** With `patient`, the token also reads that patient's other studies (priors), as OHIF's study browser shows them. */
  async issue(studyUid: string, ttl = this.lifetime.defaultTtl, patient?: PatientRef): Promise<IssuedToken> {
    const key = await this.keys.signing();
    const jti = randomUUID();
    const now = Math.floor(Date.now() / 1000);
    const { iss, aud } = tokenParties(key.secret, this.publicUrl);
    const token = await new SignJWT(patient ? { scope: SCOPE, patient } : { scope: SCOPE })
      .setProtectedHeader({ alg: ALGORITHM, typ: TOKEN_TYPE, kid: key.kid })
      .setIssuer(iss)
      .setAudience(aud)
      .setSubject(studyUid)
      .setJti(jti)
      .setIssuedAt(now)
      .setExpirationTime(now + ttl)
      .sign(key.secret);
    return { token, jti, studyUid, expiresIn: ttl, expiresAt: new Date((now + ttl) * 1000) };
  }

  /** The study a token opens, or a 401 whose reason names what is wrong with it. */
  async verify(token: string): Promise<Principal & { kind: 'viewer-token' }> {
    if (token.length > MAX_TOKEN_CHARS) throw invalid(`the token is ${token.length} characters long, more than any token this server issues`);
    const claims = await this.verifiedClaims(token);
    // A cached token is checked again for what can change since: its expiry, its key, its revocation.
    if (claims.exp + CLOCK_TOLERANCE_SECONDS <= Date.now() / 1000) throw invalid(EXPIRED, claims.jti);
    if (!(await this.keys.verifying(claims.kid))) throw invalid(UNKNOWN_KEY, claims.jti);
    if (await this.records.isTokenRevoked(claims.jti, claims.studyUid, claims.iat)) throw invalid('the token was revoked', claims.jti);
    return { kind: 'viewer-token', jti: claims.jti, studyUid: claims.studyUid, ...(claims.patient && { patient: claims.patient }) };
  }

  /** Revokes one token; the record is kept as long as any token could live. */
  revoke(jti: string): Promise<void> {
    const now = Date.now();
    return this.records.revokeToken(jti, now + (LONGEST_TOKEN_TTL + CLOCK_TOLERANCE_SECONDS) * 1000, now);
  }

  /**
   * The claims of a token whose signature and claims verified. OHIF sends one token with every frame it
   * asks for; checking its signature each time cost more than serving a small frame, so good tokens are kept.
   */
  private async verifiedClaims(token: string): Promise<VerifiedClaims> {
    const known = this.verified.get(token);
    if (known) return known;
    let payload, protectedHeader, key;
    try {
      ({ payload, protectedHeader, key } = await jwtVerify(token, (header: JWTHeaderParameters) => this.keyFor(header), {
        algorithms: [ALGORITHM],
        typ: TOKEN_TYPE,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        requiredClaims: ['exp', 'iat', 'jti', 'sub'],
      }));
    } catch (e) {
      throw invalid(reasonOf(e));
    }
    const { iss, aud } = tokenParties(key as Uint8Array, this.publicUrl);
    if (payload.iss !== iss || payload.aud !== aud) throw invalid('the token was issued for another installation: its iss and aud claims do not name this server', payload.jti);
    // Signed with our key, yet a JSON value of any type (found by fuzzing: a null sub or an object jti was a 500).
    if (typeof payload.sub !== 'string' || typeof payload.jti !== 'string') throw invalid('the token\'s sub and jti claims are not strings');
    const studyUid = payload.sub;
    if (payload.scope !== SCOPE || !isValidUid(studyUid)) throw invalid('the token does not grant read access to a study');
    if (payload.iat! > Date.now() / 1000 + CLOCK_TOLERANCE_SECONDS) throw invalid('the token claims to be issued in the future');
    // Signed here, yet asking for more life than this server grants: a token is never trusted beyond the configured maximum.
    const life = payload.exp! - payload.iat!;
    if (life > this.lifetime.maxTtl + CLOCK_TOLERANCE_SECONDS) throw invalid(`the token claims a life of ${life} s, longer than the ${this.lifetime.maxTtl} s this server grants`, payload.jti);
    const patient = payload.patient === undefined ? undefined : patientClaim(payload.patient);
    const claims = { jti: payload.jti!, studyUid, patient, iat: payload.iat!, exp: payload.exp!, kid: protectedHeader.kid! };
    if (this.verified.size >= VERIFIED_TOKENS_KEPT) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(token, claims);
    return claims;
  }

  /**
   * Revokes every token issued for a study until now. Tokens carry their issue time in whole seconds, so
   * the revocation returns only once that second is over: every link made afterwards works.
   */
  async revokeStudy(studyUid: string): Promise<void> {
    const now = Date.now();
    await this.records.revokeStudyTokens(studyUid, Math.floor(now / 1000));
    await new Promise((resolve) => setTimeout(resolve, 1000 - (now % 1000)));
  }

  private async keyFor(header: JWTHeaderParameters): Promise<Uint8Array> {
    const key = header.kid === undefined ? undefined : await this.keys.verifying(header.kid);
    if (!key) throw new UnknownKey();
    return key.secret;
  }
}

/**
 * A token's iss and aud name the installation, so that two installations sharing a signing key by mistake refuse
 * each other's links: from PACS_PUBLIC_URL when set (the same on every replica), else from the key that signed,
 * which replicas share by configuration and which differs between installations unless configured alike.
 */
export function tokenParties(secret: Uint8Array, publicUrl: string | undefined): { iss: string; aud: string } {
  const id = publicUrl
    ? createHash('sha256').update(`pacs-lite installation\0${publicUrl}`).digest('base64url').slice(0, 22)
    : createHmac('sha256', secret).update('pacs-lite installation').digest('base64url').slice(0, 22);
  return { iss: `pacs-lite:${id}`, aud: `pacs-lite:${id}/dicom-web` };
}

class UnknownKey extends Error {}

/** The patient claim of a token signed here, held to the shape issue() gives it. */
function patientClaim(claim: unknown): PatientRef {
  const { id, issuer } = (claim ?? {}) as Record<string, unknown>;
  const fits = (v: unknown, min: number) => typeof v === 'string' && v.length >= min && v.length <= MAX_PATIENT_CHARS;
  if (typeof claim !== 'object' || !fits(id, 1) || !fits(issuer, 0)) throw invalid("the token's patient claim is not a PatientID and IssuerOfPatientID");
  return { id: id as string, issuer: issuer as string };
}

const invalid = (reason: string, jti?: string) => new Unauthorized(reason, true, jti && `token:${jti}`);

function reasonOf(e: unknown): string {
  if (e instanceof UnknownKey) return UNKNOWN_KEY;
  if (e instanceof errors.JWTExpired) return EXPIRED;
  if (e instanceof errors.JOSEAlgNotAllowed) return `tokens signed with that algorithm are not accepted; only ${ALGORITHM}`;
  if (e instanceof errors.JWSSignatureVerificationFailed) return 'the token signature does not verify: it was altered or signed elsewhere';
  if (e instanceof errors.JWTClaimValidationFailed) return `the token's ${e.claim} claim is not valid here (${e.reason === 'check_failed' ? 'wrong value' : e.reason})`;
  if (e instanceof errors.JOSEError) return 'the token is not a well-formed viewer token';
  throw e;
}
