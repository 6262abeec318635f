import { randomUUID } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { decodeJwt } from 'jose';
import { ApiKeys } from './auth/api-keys.js';
import { commandLineCredential, ROLES, type Role } from './auth/principal.js';
import type { AccessRecords, ApiKeyRecord, AuditEvent } from './auth/records.js';
import { openSigningKeys, retiredKeyLife, SigningKeys } from './auth/signing-keys.js';
import { ViewerTokens } from './auth/viewer-tokens.js';
import { openCatalog, type IndexDatabase } from './catalog/open.js';
import { ACCESS_USAGE } from './cli-usage.js';
import { loadConfig, type Config } from './config.js';
import { isValidUid } from './dicom/uid.js';

/** Same bounds as POST /api/v1/keys. */
const MAX_NAME = 200;
const MAX_DAYS = 3650;
const DAY_MS = 86_400_000;
const JTI = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Wrong arguments: said with the usage, exit code 2. */
class UsageError extends Error {}

/** Runs `keys …`, `tokens …` or `signing-key …`; sets the exit code: 1 when refused, 2 on bad usage. */
export async function runAccessCommand(command: string, args: string[]): Promise<void> {
  try {
    const [sub, ...rest] = args;
    switch (`${command} ${sub ?? ''}`) {
      case 'keys create':
        return await createKey(rest);
      case 'keys list':
        noMore(rest);
        return await listKeys();
      case 'keys revoke':
        return await revokeKey(single(rest, 'keys revoke needs the id of a key (see keys list)'));
      case 'tokens revoke':
        return await revokeToken(single(rest, 'tokens revoke needs the jti of a token, the token, or the viewer link'));
      case 'tokens revoke-study':
        return await revokeStudy(single(rest, 'tokens revoke-study needs a StudyInstanceUID'));
      case 'signing-key rotate':
        noMore(rest);
        return await rotateSigningKey();
      default:
        throw new UsageError(sub ? `unknown command: ${command} ${sub}` : `${command} needs a subcommand`);
    }
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    console.error(`${e.message}\n\n${ACCESS_USAGE}`);
    process.exitCode = 2;
  }
}

async function createKey(args: string[]) {
  let values;
  try {
    ({ values } = parseArgs({ args, options: { role: { type: 'string' }, name: { type: 'string' }, expires: { type: 'string' } }, strict: true }));
  } catch (e) {
    throw new UsageError(`keys create: ${(e as Error).message}`);
  }
  const role = values.role;
  if (!isRole(role)) throw new UsageError(`keys create needs --role, one of: ${ROLES.join(', ')}${role === undefined ? '' : ` (not "${printable(role)}")`}`);
  const name = values.name?.trim() ?? '';
  if (!name) throw new UsageError('keys create needs --name "<who or what uses the key>", such as --name "EMR (Orbis)"');
  if (name.length > MAX_NAME || printable(name) !== name) throw new UsageError(`--name must be at most ${MAX_NAME} printable characters`);
  const days = values.expires === undefined ? undefined : expiryDays(values.expires);

  await withAccess(async ({ keys, records }) => {
    const { key, record } = await keys.create({ name, role, expiresAt: days === undefined ? undefined : Date.now() + days * DAY_MS });
    console.log(`API key created:\n\n    ${key}\n`);
    console.log('This key is shown now and will not be shown again: copy it into the system that will use it.');
    console.log('(The server keeps only a hash of it. If it is lost, revoke it and create another.)\n');
    console.log(`  id       ${record.id}`);
    console.log(`  role     ${record.role}`);
    console.log(`  name     ${record.name}`);
    console.log(`  expires  ${record.expiresAt === null ? 'never (until revoked)' : `${utc(record.expiresAt)} UTC (in ${days} day(s))`}`);
    await auditCli(records, 'keys create', `id=${record.id}&role=${record.role}`);
  });
}

async function listKeys() {
  await withAccess(async ({ keys }) => {
    const records = await keys.list();
    if (records.length === 0) {
      console.log('No API keys yet. Create one with: npm run cli -- keys create --role admin --name "<who>"');
      return;
    }
    const now = Date.now();
    const rows = records.map((k) => [
      k.id,
      k.role,
      clip(printable(k.name), 40),
      printable(k.hint),
      utc(k.createdAt),
      k.expiresAt === null ? 'never' : utc(k.expiresAt),
      statusOf(k, now),
    ]);
    console.log(table(['ID', 'ROLE', 'NAME', 'HINT', 'CREATED', 'EXPIRES', 'STATUS'], rows));
    const active = rows.filter((r) => r[6] === 'active').length;
    console.log(`\n${records.length} key(s), ${active} active. Times are UTC.`);
  });
}

async function revokeKey(id: string) {
  await withAccess(async ({ keys, records }) => {
    const record = (await keys.list()).find((k) => k.id === id);
    if (!record) {
      console.error(`No API key has the id "${printable(id)}"; \`npm run cli -- keys list\` shows the ids.`);
      process.exitCode = 1;
      return;
    }
    const who = `API key ${record.id} ("${printable(record.name)}", role ${record.role})`;
    if (record.revokedAt !== null) {
      console.log(`${who} was already revoked on ${utc(record.revokedAt)} UTC.`);
      return;
    }
    await keys.revoke(id);
    await auditCli(records, 'keys revoke', `id=${id}`);
    console.log(`Revoked ${who}: the server refuses it from its next request.`);
    // seedAdmin leaves a revoked PACS_ADMIN_KEY revoked, but the operator should know it is now dead config.
    if (record.hint === '(PACS_ADMIN_KEY)') console.log('It stays revoked after a restart; remove PACS_ADMIN_KEY from the configuration.');
    const now = Date.now();
    if (record.role === 'admin' && !(await keys.list()).some((k) => k.role === 'admin' && statusOf(k, now) === 'active')) {
      console.log('No active admin key is left; make one with: npm run cli -- keys create --role admin --name "<who>"');
    }
  });
}

async function revokeToken(text: string) {
  const { jti, claims } = jtiOf(text);
  await withAccess(async ({ config, records }) => {
    await (await tokensOf(config, records)).revoke(jti);
    await auditCli(records, 'tokens revoke', `jti=${jti}`);
    console.log(`Revoked viewer token ${jti}: the link carrying it no longer opens its study.`);
    if (claims?.sub) console.log(`  study    ${claims.sub}`);
    if (claims?.exp) console.log(`  expires  ${utc(claims.exp * 1000)} UTC (it would have stopped working then anyway)`);
    // Tokens are not stored, so a mistyped id cannot be told apart from a real one.
    if (!claims) console.log('Check that the id is the one from the link: any well-formed id is accepted.');
  });
}

async function revokeStudy(studyUid: string) {
  if (!isValidUid(studyUid)) throw new UsageError(`"${printable(studyUid)}" is not a StudyInstanceUID (digits and dots, at most 64 characters)`);
  await withAccess(async ({ config, records }) => {
    await (await tokensOf(config, records)).revokeStudy(studyUid);
    await auditCli(records, 'tokens revoke-study', null, studyUid);
    console.log(`Revoked every viewer link issued so far for study ${studyUid}; links issued from now on work.`);
  });
}

async function rotateSigningKey() {
  const config = loadConfig();
  if (config.viewerToken.signingKey) {
    console.error(
      [
        'PACS_VIEWER_SIGNING_KEY is set, so viewer links are signed with the configured key and this command cannot change it.',
        'To rotate a configured key: set PACS_VIEWER_SIGNING_KEY_PREVIOUS to the current value of PACS_VIEWER_SIGNING_KEY,',
        'set PACS_VIEWER_SIGNING_KEY to a new key (`openssl rand -base64 32`), and restart the server.',
        `Links issued before keep working while PACS_VIEWER_SIGNING_KEY_PREVIOUS is set; remove it after ${hours(config.viewerToken.maxTtl)}, the longest a link lives.`,
      ].join('\n'),
    );
    process.exitCode = 1;
    return;
  }
  if (!(await hasIndex(config))) return;
  const life = retiredKeyLife(config);
  const { kid, retired } = await SigningKeys.rotate(config.storageDir, life);
  await withAccess((access) => auditCli(access.records, 'signing-key rotate', `kid=${kid}`));
  console.log(`New viewer-link signing key ${kid}: links issued from now on are signed with it (a running server picks it up without a restart).`);
  const keys = await SigningKeys.stored(config.storageDir, life);
  const still: string[] = [];
  for (const old of retired) {
    const key = await keys.verifying(old);
    if (key?.retiredAt != null) still.push(`  ${old}  until ${utc(key.retiredAt + life)} UTC`);
  }
  if (still.length === 0) console.log('No earlier key is left to verify older links.');
  else console.log(`Links issued before keep working until they expire; earlier keys that still verify them:\n${still.join('\n')}`);
}

type Access = { config: Config; catalog: IndexDatabase; records: AccessRecords; keys: ApiKeys };

/** The index only: no object store and no spool folder, so nothing is left behind beside a running server. */
export async function withAccess(use: (access: Access) => Promise<void>): Promise<void> {
  const config = loadConfig();
  if (!(await hasIndex(config))) return;
  const catalog = await openCatalog(config);
  try {
    const records = catalog.access();
    await use({ config, catalog, records, keys: new ApiKeys(records) });
  } finally {
    await catalog.close();
  }
}

/** Changes to access made here go in the audit trail beside those made over HTTP, under the user who ran them. */
export async function auditCli(records: AccessRecords, action: string, detail: string | null, studyUid: string | null = null): Promise<void> {
  await records.appendAudit([cliAuditEvent(action, detail, studyUid)]);
}

/** An audit event of a command of the command line, under the user who ran it. */
export function cliAuditEvent(action: string, detail: string | null, studyUid: string | null = null): AuditEvent {
  return {
    at: Date.now(),
    credential: commandLineCredential(),
    ip: null,
    method: 'CLI',
    path: action,
    query: detail,
    studyUid,
    seriesUid: null,
    sopUid: null,
    status: 200,
    requestId: randomUUID(),
  };
}

/**
 * A mistyped PACS_STORAGE_DIR would otherwise get a fresh index of its own, with keys the server never sees.
 * A Postgres index is named by PACS_DATABASE_URL, and a wrong one does not connect.
 */
async function hasIndex(config: Config): Promise<boolean> {
  if (config.databaseUrl) return true;
  const file = path.join(config.storageDir, 'index.sqlite');
  if (await fs.stat(file).then(() => true, () => false)) return true;
  console.error(`No index at ${file}: set PACS_STORAGE_DIR to the server's storage folder (the server makes the index on its first start).`);
  process.exitCode = 1;
  return false;
}

/** Revocation needs no signing key, but ViewerTokens is where revocation is defined. */
async function tokensOf(config: Config, records: AccessRecords): Promise<ViewerTokens> {
  return new ViewerTokens(await openSigningKeys(config), records, config.viewerToken);
}

/** A token's id, given as itself, as the token, or as the viewer link that carries the token. */
function jtiOf(text: string): { jti: string; claims?: { sub?: string; exp?: number } } {
  let token = text.trim();
  if (JTI.test(token)) return { jti: token };
  if (/^https?:\/\//i.test(token)) {
    try {
      token = new URL(token).searchParams.get('token') ?? '';
    } catch {
      token = '';
    }
  }
  let claims;
  try {
    claims = decodeJwt(token);
  } catch {
    claims = undefined;
  }
  // Not verified: revoking an id that a forger chose harms nobody.
  if (typeof claims?.jti === 'string' && JTI.test(claims.jti)) return { jti: claims.jti, claims };
  throw new UsageError('tokens revoke needs a token id (a UUID, the "jti" of the token), the token itself, or the viewer link with ?token=');
}

function expiryDays(text: string): number {
  const m = /^(\d+)d?$/i.exec(text.trim());
  const days = m ? Number(m[1]) : NaN;
  if (!(days >= 1 && days <= MAX_DAYS)) throw new UsageError(`--expires takes a number of days from 1 to ${MAX_DAYS}, such as --expires 90d (not "${printable(text)}")`);
  return days;
}

function isRole(value: string | undefined): value is Role {
  return (ROLES as readonly string[]).includes(value ?? '');
}

function statusOf(key: ApiKeyRecord, now: number): 'active' | 'expired' | 'revoked' {
  if (key.revokedAt !== null) return 'revoked';
  if (key.expiresAt !== null && key.expiresAt <= now) return 'expired';
  return 'active';
}

function noMore(args: string[]) {
  if (args.length > 0) throw new UsageError(`unexpected argument: ${printable(args[0]!)}`);
}

function single(args: string[], missing: string): string {
  if (args.length === 0 || !args[0]) throw new UsageError(missing);
  noMore(args.slice(1));
  return args[0];
}

export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  return [line(header), ...rows.map(line)].join('\n');
}

/** Names came from whoever made the key, perhaps over HTTP: no terminal escapes or reordering reach the screen. */
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

export function printable(text: string): string {
  return text.replace(UNPRINTABLE, '?');
}

function clip(text: string, width: number): string {
  return text.length > width ? `${text.slice(0, width - 1)}…` : text;
}

export function utc(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

function hours(seconds: number): string {
  return seconds % 3600 === 0 ? `${seconds / 3600} hour(s)` : `${Math.ceil(seconds / 60)} minute(s)`;
}
