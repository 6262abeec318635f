import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** An EMR's web page, served on 127.0.0.1 by a server of its own: another origin than PACS-lite's. */
export type EmrPage = { port: number; close(): Promise<void> };

export async function serveEmrPage(html: string, port = 0): Promise<EmrPage> {
  const server = http.createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end(html));
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
