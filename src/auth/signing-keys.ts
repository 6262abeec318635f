import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.js';
import { CLOCK_TOLERANCE_SECONDS } from './viewer-tokens.js';

export type SigningKey = { kid: string; secret: Uint8Array; createdAt: number; retiredAt: number | null };
type KeyFile = { keys: Array<{ kid: string; secret: string; createdAt: number; retiredAt: number | null }> };

const RECHECK_MS = 1000;

/** A key's id says which key signed a token without saying anything of the key. */
const kidOf = (secret: Uint8Array) => createHash('sha256').update(secret).digest('base64url').slice(0, 16);

/**
 * The keys viewer tokens are signed with (DESIGN decision 8). Unless the operator configures one, they
 * are generated on first start and kept in `<storage>/secrets/viewer-signing-keys.json`, mode 0600. The
 * newest key signs; a rotated-out key still verifies until every token it signed has expired.
 */
export class SigningKeys {
  private keys: SigningKey[] = [];
  private loadedVersion = '';
  private checkedAt = 0;

  private constructor(
    private readonly file: string | undefined,
    /** How long a retired key keeps verifying: the longest life a token can have, and a margin. */
    private readonly retiredKeyLife: number,
  ) {}

  static fileIn(storageDir: string): string {
    return path.join(storageDir, 'secrets', 'viewer-signing-keys.json');
  }

  /** Keys given in the configuration (base64); the previous one only verifies. */
  static configured(current: string, previous: string | undefined): SigningKeys {
    const keys = new SigningKeys(undefined, 0);
    keys.keys = [current, previous].flatMap((text) => {
      if (!text) return [];
      const secret = new Uint8Array(Buffer.from(text, 'base64'));
      return [{ kid: kidOf(secret), secret, createdAt: 0, retiredAt: text === current ? null : Infinity }];
    });
    return keys;
  }

  /** Keys kept in the storage folder, made on first start. */
  static async stored(storageDir: string, retiredKeyLife: number): Promise<SigningKeys> {
    const keys = new SigningKeys(SigningKeys.fileIn(storageDir), retiredKeyLife);
    if (!(await keys.reloadIfChanged())) {
      await writeKeyFile(keys.file!, { keys: [newKey()] }, { exclusive: true });
      await keys.reloadIfChanged();
    }
    return keys;
  }

  /** Makes a new signing key; the old ones verify what they signed until it expires, then go. */
  static async rotate(storageDir: string, retiredKeyLife: number): Promise<{ kid: string; retired: string[] }> {
    const file = SigningKeys.fileIn(storageDir);
    const now = Date.now();
    const old = (await readKeyFile(file))?.keys ?? [];
    const kept = old
      .map((k) => ({ ...k, retiredAt: k.retiredAt ?? now }))
      .filter((k) => k.retiredAt + retiredKeyLife > now);
    const fresh = newKey();
    await writeKeyFile(file, { keys: [fresh, ...kept] }, { exclusive: false });
    return { kid: fresh.kid, retired: kept.map((k) => k.kid) };
  }

  /** The key that signs now; a rotation by the command-line tool is picked up without a restart. */
  async signing(): Promise<SigningKey> {
    await this.reloadIfChanged();
    return this.keys.find((k) => k.retiredAt === null)!;
  }

  /** The key a token names, if it may still verify. */
  async verifying(kid: string): Promise<SigningKey | undefined> {
    // Reloaded here too: a process that only verifies would otherwise keep trusting a key that a rotation
    // retired, or that the operator dropped from the file, until it restarts. A stat a second is enough for that.
    if (Date.now() - this.checkedAt >= RECHECK_MS) await this.reloadIfChanged();
    const key = this.keys.find((k) => k.kid === kid);
    if (key && key.retiredAt !== null && key.retiredAt + this.retiredKeyLife <= Date.now()) return undefined;
    return key;
  }

  /** True when a key file exists (and is now loaded). */
  private async reloadIfChanged(): Promise<boolean> {
    if (!this.file) return true;
    this.checkedAt = Date.now();
    const stat = await fs.stat(this.file).catch(() => undefined);
    if (!stat) return false;
    // A rotation renames a new file into place: a new inode even where timestamps are coarse.
    const version = `${stat.ino}:${stat.mtimeMs}:${stat.size}`;
    if (version === this.loadedVersion) return true;
    if ((stat.mode & 0o077) !== 0) await fs.chmod(this.file, 0o600);
    const parsed = await readKeyFile(this.file);
    if (!parsed?.keys.length) throw new Error(`${this.file} holds no signing key; delete it to have a new one made`);
    this.keys = parsed.keys.map((k) => ({ ...k, secret: new Uint8Array(Buffer.from(k.secret, 'base64url')) }));
    this.loadedVersion = version;
    return true;
  }
}

function newKey() {
  const secret = randomBytes(32);
  return { kid: kidOf(secret), secret: secret.toString('base64url'), createdAt: Date.now(), retiredAt: null };
}

async function readKeyFile(file: string): Promise<KeyFile | undefined> {
  const text = await fs.readFile(file, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw e;
  });
  return text === undefined ? undefined : (JSON.parse(text) as KeyFile);
}

/**
 * Written whole and moved into place, so a reader never sees half a key. `exclusive` is for first start:
 * when two servers start together on one folder, one key file wins and both use it.
 */
async function writeKeyFile(file: string, content: KeyFile, opts: { exclusive: boolean }): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  // Unique per write: two writers in one process must not share, and remove, each other's temp file.
  const temp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  const handle = await fs.open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(JSON.stringify(content, null, 2));
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (opts.exclusive) {
      await fs.link(temp, file).catch((e: NodeJS.ErrnoException) => {
        if (e.code !== 'EEXIST') throw e;
      });
    } else {
      await fs.rename(temp, file);
    }
  } finally {
    await fs.rm(temp, { force: true });
  }
}

/** The viewer-token signing keys: configured ones when PACS_VIEWER_SIGNING_KEY is set, else those in the storage folder. */
export async function openSigningKeys(config: Config): Promise<SigningKeys> {
  return config.viewerToken.signingKey
    ? SigningKeys.configured(config.viewerToken.signingKey, config.viewerToken.previousSigningKey)
    : SigningKeys.stored(config.storageDir, retiredKeyLife(config));
}

/** A rotated-out signing key verifies for as long as the tokens it signed can live. */
export function retiredKeyLife(config: Config): number {
  return (config.viewerToken.maxTtl + CLOCK_TOLERANCE_SECONDS) * 1000;
}
