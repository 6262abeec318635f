import { BlockList, isIP } from 'node:net';

/**
 * The reverse proxies whose X-Forwarded-* headers are believed (PACS_TRUSTED_PROXIES). Anyone else could write
 * them, so by default nobody is trusted, loopback included: a local nginx is named as 127.0.0.1 like any other.
 */
export class TrustedProxies {
  private readonly list = new BlockList();

  constructor(entries: readonly string[]) {
    for (const entry of entries) {
      const [address = '', bits] = entry.split('/');
      const family = isIP(address) === 6 ? 'ipv6' : 'ipv4';
      if (bits === undefined) this.list.addAddress(address, family);
      else this.list.addSubnet(address, Number(bits), family);
    }
  }

  trusts(address: string | undefined): boolean {
    const plain = address && unmapped(address);
    return !!plain && isIP(plain) !== 0 && this.list.check(plain, isIP(plain) === 6 ? 'ipv6' : 'ipv4');
  }

  /**
   * Who is asking: the peer, or behind trusted proxies the nearest address in X-Forwarded-For that is not one of
   * them (the hops to its left are the client's to write).
   */
  clientAddress(peer: string | undefined, forwardedFor: string | undefined): { address: string; via?: string } {
    const socket = peer ? unmapped(peer) : 'unknown';
    if (!forwardedFor || !this.trusts(socket)) return { address: socket };
    let nearest = socket;
    for (const hop of forwardedFor.split(',').map((h) => unmapped(h.trim())).reverse()) {
      if (isIP(hop) === 0) break;
      nearest = hop;
      if (!this.trusts(hop)) break;
    }
    return nearest === socket ? { address: socket } : { address: nearest, via: socket };
  }
}

/** `::ffff:10.1.2.3`, as a dual-stack socket names an IPv4 peer, is 10.1.2.3. */
function unmapped(address: string): string {
  return address.toLowerCase().startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}
