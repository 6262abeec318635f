import { createHmac } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Delivery, Webhook } from '../catalog/catalog.js';
import { guardedLookup, localReason } from './targets.js';

/** A receiver has this long to answer; one that hangs is a failed try, retried later. */
const SEND_TIMEOUT_MS = 10_000;
/** Of a receiver's answer only the start is read, for the delivery's record. */
const KEPT_ANSWER_BYTES = 200;

export type Sent = { status: number | null; error: string | null };

/**
 * The signature a receiver checks: HMAC-SHA256 under the webhook's secret of `<t>.<body>`, where t is the Unix time
 * in seconds sent beside it (`X-PACS-Signature: t=<t>,v1=<hex>`). The time lets a receiver refuse old replays.
 */
export function signature(secret: string, unixSeconds: number, body: string): string {
  return `t=${unixSeconds},v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`;
}

/** One try: POST the delivery's body. A 2xx answer is delivered; a redirect is not followed, since its target was never checked. */
export function send(webhook: Webhook, delivery: Delivery): Promise<Sent> {
  const url = new URL(webhook.url);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // An address literal is connected to without a lookup: checked here, as guardedLookup checks names.
  const refused = !webhook.allowLocal && net.isIP(host) ? localReason(host) : undefined;
  if (refused) return Promise.resolve({ status: null, error: `refused: ${refused}` });
  const body = Buffer.from(delivery.body);
  return new Promise<Sent>((resolve) => {
    const request = (url.protocol === 'https:' ? https : http).request(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json',
        'Content-Length': body.length,
        'User-Agent': 'PACS-lite webhooks',
        'X-PACS-Event': delivery.eventType,
        'X-PACS-Delivery': delivery.id,
        'X-PACS-Signature': signature(webhook.secret, Math.floor(Date.now() / 1000), delivery.body),
      },
      lookup: webhook.allowLocal ? undefined : guardedLookup,
      timeout: SEND_TIMEOUT_MS,
    });
    const timer = setTimeout(() => request.destroy(new Error(`no answer within ${SEND_TIMEOUT_MS / 1000} s`)), SEND_TIMEOUT_MS);
    const settle = (sent: Sent) => {
      clearTimeout(timer);
      resolve(sent);
    };
    request.on('timeout', () => request.destroy(new Error(`no answer within ${SEND_TIMEOUT_MS / 1000} s`)));
    request.on('error', (e) => settle({ status: null, error: e.message }));
    request.on('response', (response) => {
      const status = response.statusCode ?? 0;
      let answer = '';
      response.on('data', (chunk: Buffer) => {
        if (answer.length < KEPT_ANSWER_BYTES) answer += chunk.toString('utf8', 0, KEPT_ANSWER_BYTES - answer.length);
      });
      response.on('error', (e) => settle({ status, error: e.message }));
      response.on('end', () => {
        if (status >= 200 && status < 300) return settle({ status, error: null });
        if (status >= 300 && status < 400) return settle({ status, error: `redirected to ${response.headers.location ?? '(no Location)'}; redirects are not followed: configure the final URL` });
        settle({ status, error: answer.trim() || `answered ${status}` });
      });
    });
    request.end(body);
  });
}
