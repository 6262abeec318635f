import type { Context } from 'hono';
import type { TrustedProxies } from '../auth/proxies.js';
import type { Env } from '../context.js';

/**
 * The DICOMweb root as clients reach it (DESIGN decision 5): the configured public URL, else the request's own
 * origin (`publicBase`, set for every request by app.ts from `requestBase`).
 */
export function dicomwebRoot(c: Context<Env>, publicUrl: string | undefined): string {
  return `${publicUrl ?? c.var.publicBase}/dicom-web`;
}

/**
 * The request's own base URL: Host, as corrected by X-Forwarded-Proto/Host/Prefix only when the peer is a trusted
 * proxy. Every part is checked before it goes into a URL we hand out; a part that fails is not used.
 */
export function requestBase(c: Context<Env>, proxies: TrustedProxies): string {
  const socket = c.env?.incoming?.socket;
  const trusted = proxies.trusts(socket?.remoteAddress);
  const forwarded = (name: string) => (trusted ? c.req.header(name)?.split(',')[0]?.trim() : undefined);
  const url = new URL(c.req.url);
  const proto = [forwarded('x-forwarded-proto')?.toLowerCase(), url.protocol.slice(0, -1)].find((p) => p === 'http' || p === 'https') ?? 'http';
  const local = socket?.localAddress?.includes(':') ? `[${socket.localAddress}]` : socket?.localAddress;
  const host = [forwarded('x-forwarded-host'), c.req.header('host'), url.host, local && `${local}:${socket!.localPort}`].find((h) => !!h && HOST.test(h)) ?? 'localhost';
  const prefix = forwarded('x-forwarded-prefix')?.replace(/\/+$/, '') ?? '';
  return `${proto}://${host}${PREFIX.test(prefix) ? prefix : ''}`;
}

/** A DNS name or an IPv4 address, or an IPv6 address in brackets, with an optional port (RFC 3986 3.2.2). */
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;
/** Path segments of unreserved characters and escapes: nothing that could end the URL's path or start another. */
const PREFIX = /^(?:\/(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+)*$/;
