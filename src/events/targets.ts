import dns from 'node:dns';
import net from 'node:net';
import os from 'node:os';

/**
 * Where a webhook may point. A URL an admin types (or an attacker with an admin key) must not turn the server into a
 * client of itself or of the cloud's metadata service (169.254.169.254), which hands out credentials: loopback,
 * link-local, unspecified, multicast and this host's own addresses are refused unless the admin allows local
 * receivers for that webhook. The clinic's LAN (10/8, 192.168/16, …) is where EMRs live, and is allowed.
 */
export class WebhookTargetError extends Error {}

const LOCAL = new net.BlockList();
LOCAL.addSubnet('0.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('127.0.0.0', 8, 'ipv4');
LOCAL.addSubnet('169.254.0.0', 16, 'ipv4');
LOCAL.addSubnet('224.0.0.0', 4, 'ipv4');
LOCAL.addAddress('255.255.255.255', 'ipv4');
LOCAL.addAddress('::', 'ipv6');
LOCAL.addAddress('::1', 'ipv6');
LOCAL.addSubnet('fe80::', 10, 'ipv6');
LOCAL.addSubnet('ff00::', 8, 'ipv6');

/** Why this address may not receive webhooks without allow_local, or undefined when it may. */
export function localReason(address: string): string | undefined {
  // An IPv4 address written as IPv6 (::ffff:127.0.0.1) is the IPv4 address.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  const plain = mapped ?? address;
  const family = net.isIPv4(plain) ? 'ipv4' : 'ipv6';
  if (LOCAL.check(plain, family)) return `${address} is a loopback, link-local, multicast or unspecified address`;
  if (ownAddresses().has(plain.toLowerCase())) return `${address} is an address of this server`;
  return undefined;
}

function ownAddresses(): Set<string> {
  return new Set(
    Object.values(os.networkInterfaces())
      .flat()
      .map((i) => i!.address.toLowerCase()),
  );
}

/** The URL a webhook is configured with: http or https, with a host, and (unless allowLocal) not a local one. */
export async function checkTarget(raw: string, allowLocal: boolean): Promise<URL> {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new WebhookTargetError(`url must be an absolute http:// or https:// URL, not "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new WebhookTargetError(`url must use http or https, not ${url.protocol}`);
  if (url.username || url.password) throw new WebhookTargetError('url must not carry a user name or password: receivers verify the X-PACS-Signature header instead');
  if (allowLocal) return url;
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = net.isIP(host) ? [host] : await resolve(host);
  for (const address of addresses) {
    const reason = localReason(address);
    if (reason) throw new WebhookTargetError(`${url.host} resolves to ${reason}; a receiver on this host needs allow_local: true`);
  }
  return url;
}

async function resolve(host: string): Promise<string[]> {
  try {
    return (await dns.promises.lookup(host, { all: true })).map((a) => a.address);
  } catch (e) {
    throw new WebhookTargetError(`the host ${host} does not resolve (${(e as NodeJS.ErrnoException).code ?? 'error'}); check the URL`);
  }
}

/**
 * A DNS lookup for http.request that refuses local addresses as the connection is made: a name that resolved to a
 * LAN address when the webhook was saved may resolve to 127.0.0.1 by the time it is sent (DNS rebinding).
 */
export const guardedLookup: net.LookupFunction = (hostname, options, callback) => {
  dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
    if (err) return callback(err, '', 0);
    const found = addresses as dns.LookupAddress[];
    const refused = found.map((a) => localReason(a.address)).find((r) => r !== undefined);
    if (refused) return callback(new WebhookTargetError(`${hostname} now resolves to ${refused}`), '', 0);
    if (options.all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, found);
    callback(null, found[0]!.address, found[0]!.family);
  });
};
