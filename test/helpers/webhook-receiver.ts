import { createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export type Received = { headers: http.IncomingHttpHeaders; body: string; answered: number };

/**
 * A webhook receiver on a random loopback port, as an EMR would run one: it records every request, and answers each
 * as `answer` says (a status, or 'hang' to never answer).
 */
export async function startReceiver(answer: (n: number, received: Received) => number | 'hang' = () => 200) {
  const received: Received[] = [];
  const hanging = new Set<http.ServerResponse>();
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const entry: Received = { headers: req.headers, body: Buffer.concat(chunks).toString(), answered: 0 };
      const status = answer(received.length, entry);
      received.push(entry);
      if (status === 'hang') return void hanging.add(res);
      entry.answered = status;
      if (status >= 300 && status < 400) res.setHeader('Location', 'http://169.254.169.254/latest/meta-data/');
      res.writeHead(status).end(status >= 400 ? 'receiver says no' : 'ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    port,
    received,
    /** The requests answered with a 2xx. */
    accepted: () => received.filter((r) => r.answered >= 200 && r.answered < 300),
    async stop() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The documented check (README, "Webhooks"): HMAC-SHA256 under the secret of `<t>.<body>`, compared in constant time. */
export function signatureIsValid(secret: string, header: string | undefined, body: string): boolean {
  const match = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header ?? '');
  if (!match) return false;
  const expected = createHmac('sha256', secret).update(`${match[1]}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(match[2]!, 'hex'));
}
