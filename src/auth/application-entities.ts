import { isIP } from 'node:net';
import { trimAeTitle, type ApplicationEntity, type Catalog } from '../catalog/catalog.js';
import { AE_CHARACTERS, MAX_AE_TITLE } from '../dicom/ae-title.js';
import { BadRequest } from '../errors.js';

/** What an association may do, once its caller is known (or not). */
export type Permissions = { store: boolean; query: boolean; retrieve: boolean };

/*
 * What makes a known application entity valid, in one place for the command line and the admin API: both hand what
 * they were given here before it reaches the index.
 */

/** A label of a host name (RFC 1123 2.1): letters, digits and inner hyphens. */
const HOST_LABEL = /^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$/;
const MAX_HOST = 253;
const MAX_DESCRIPTION = 200;

export type ApplicationEntityInput = {
  aeTitle: string;
  host?: string | null;
  port?: number | null;
  store: boolean;
  query: boolean;
  retrieve: boolean;
  description?: string | null;
};

/** The AE title as kept (trimmed), or BadRequest saying what is wrong with it. */
export function aeTitleOf(text: string): string {
  const title = trimAeTitle(text);
  if (!AE_CHARACTERS.test(title)) throw new BadRequest('an AE title holds printable ASCII only (letters, digits, spaces, punctuation), without "\\" or control characters');
  if (title.length === 0 || title.length > MAX_AE_TITLE) {
    throw new BadRequest(`an AE title is 1 to ${MAX_AE_TITLE} characters, leading and trailing spaces aside${title.length ? `; "${title}" has ${title.length}` : ''}`);
  }
  return title;
}

/** The entity as the index keeps it, or BadRequest naming the first thing wrong. */
export function applicationEntityOf(input: ApplicationEntityInput): Omit<ApplicationEntity, 'createdAt'> {
  const description = input.description?.trim() || null;
  if (description !== null && description.length > MAX_DESCRIPTION) throw new BadRequest(`a description is at most ${MAX_DESCRIPTION} characters`);
  return {
    aeTitle: aeTitleOf(input.aeTitle),
    host: hostOf(input.host ?? null),
    port: portOf(input.port ?? null),
    store: input.store,
    query: input.query,
    retrieve: input.retrieve,
    description,
  };
}

/** A host name or an IP address the entity calls from and listens on; null: any address. */
function hostOf(text: string | null): string | null {
  if (text === null) return null;
  const host = text.trim();
  if (isIP(host)) return host;
  // All digits and dots is an address mistyped (10.0.0, 10.0.0.300), not a name.
  const name = host.length <= MAX_HOST && !/^[\d.]+$/.test(host) && host.split('.').every((label) => HOST_LABEL.test(label));
  if (!name) throw new BadRequest('a host is a host name (such as ct1.clinic.local) or an IPv4 or IPv6 address, without a port or brackets');
  return host;
}

function portOf(port: number | null): number | null {
  if (port !== null && !(Number.isInteger(port) && port >= 1 && port <= 65_535)) throw new BadRequest('a port is a whole number from 1 to 65535');
  return port;
}

/** What a calling AE may do: a known one from the address it may call from (any, when none is recorded). */
export async function knownCaller(catalog: Pick<Catalog, 'applicationEntity'>, aeTitle: string, address: string): Promise<Permissions | undefined> {
  const known = await catalog.applicationEntity(aeTitle);
  if (!known) return undefined;
  if (known.host !== null && !(await addressOf(known.host)).includes(normalise(address))) return undefined;
  return { store: known.store, query: known.query, retrieve: known.retrieve };
}

/** A host's addresses: the address itself, or what the name resolves to (an unresolvable name matches nothing). */
async function addressOf(host: string): Promise<string[]> {
  if (isIP(host)) return [normalise(host)];
  const { lookup } = await import('node:dns/promises');
  return (await lookup(host, { all: true }).catch(() => [])).map((a) => normalise(a.address));
}

/** IPv4 addresses as an IPv6 socket reports them (::ffff:10.0.0.5) compare as IPv4. */
export function normalise(address: string): string {
  return address.replace(/^::ffff:/i, '');
}
